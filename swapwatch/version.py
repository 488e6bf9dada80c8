"""The package's version, in a module of its own: every layer may import it, while the root
package sits on top (it exposes the public API)."""

__version__ = "0.1.0"
