#!/bin/sh
# azd preprovision hook: before anything is created, check that every model the templates deploy is
# offered in its region, that the subscription has quota left there, and that no model needs an
# access form the subscription has not been granted. The checks live in preflight.py (one place for
# both shells); this wrapper finds Python and honours VARIA_SKIP_PREFLIGHT.
#
# preprovision.ps1 does the same on Windows: keep the two in step (tests/test_preflight.py checks both).
set -eu

case "$(printf '%s' "${VARIA_SKIP_PREFLIGHT:-}" | tr '[:upper:]' '[:lower:]')" in
    1 | true | yes)
        echo "preflight: skipped (VARIA_SKIP_PREFLIGHT is set): models, quota and access were not checked."
        exit 0
        ;;
esac

for python in python3 python; do
    if command -v "$python" >/dev/null 2>&1 && "$python" -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
        exec "$python" "$(dirname "$0")/preflight.py"
    fi
done
echo "preflight: [python-missing] Python 3.9 or later is needed to check models and quota before provisioning." >&2
echo "    fix: install Python 3 (python3 on PATH), then azd provision again" >&2
echo "    fix: or provision without the check: azd env set VARIA_SKIP_PREFLIGHT true" >&2
exit 1
