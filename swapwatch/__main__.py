from swapwatch.cli.main import main

raise SystemExit(main())
