#!/bin/sh
# nginx.conf as written for one host, adapted to a container: the publish callbacks go to
# $SWAPWATCH_URL with the service token (read from $SWAPWATCH_AUTH_TOKEN_FILE: nginx cannot send an
# Authorization header, so the token rides in the callback URL's query), playback is allowed
# from $PLAY_FROM (swapwatch's addresses; by default the private ranges a container network
# uses), and the logs go to stderr.
set -eu
url=${SWAPWATCH_URL:-http://swapwatch:8080}
play_from=${PLAY_FROM:-10.0.0.0/8 172.16.0.0/12 192.168.0.0/16}
query=""
if [ -n "${SWAPWATCH_AUTH_TOKEN_FILE:-}" ]; then
    token=$(tr -d '\r\n' < "$SWAPWATCH_AUTH_TOKEN_FILE")
    case $token in
        *[!A-Za-z0-9._~-]*) echo "nginx-rtmp: the token must be URL-safe (letters, digits, . _ ~ -)" >&2; exit 2 ;;
    esac
    query="?token=$token"
fi
allow=""
for network in $play_from; do allow="${allow}allow play $network; "; done
prefix=/tmp/nginx-rtmp
mkdir -p "$prefix/conf" "$prefix/logs"
sed -e "s#http://127.0.0.1:8080/\(v1/hooks/nginx-rtmp/[a-z_]*\);#$url/\1$query;#" \
    -e "s#allow play 127.0.0.1;#$allow#" \
    -e "s#^error_log .*#error_log stderr notice;#" \
    -e "s#^pid .*#pid /tmp/nginx-rtmp/nginx.pid;#" \
    /etc/swapwatch-rtmp/nginx.conf > "$prefix/conf/nginx.conf"
for expected in "$url/v1/hooks/nginx-rtmp/publish$query;" "$allow"; do
    grep -qF "$expected" "$prefix/conf/nginx.conf" || {
        echo "nginx-rtmp: nginx.conf no longer has the lines this script adapts" >&2; exit 2; }
done
exec nginx -p "$prefix" -e stderr -c conf/nginx.conf -g 'daemon off;'
