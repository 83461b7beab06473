#!/bin/sh
# Entry point of the test app: MODE=exit stops at once, as a broken release would.
if [ "$(cat /mode)" = exit ]; then
    echo "app $(cat /www/version): exiting at once (MODE=exit)"
    exit 3
fi
echo "app $(cat /www/version) starting: $*"
exec "$@"
