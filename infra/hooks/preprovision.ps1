# azd preprovision hook (Windows): before anything is created, check that every model the templates
# deploy is offered in its region, that the subscription has quota left there, and that no model
# needs an access form the subscription has not been granted. Same steps as preprovision.sh: the
# checks live in preflight.py (one place for both shells); this wrapper finds Python and honours
# VARIA_SKIP_PREFLIGHT. Keep the two in step (tests/test_preflight.py checks both).
$ErrorActionPreference = 'Stop'

$skip = "$env:VARIA_SKIP_PREFLIGHT".Trim().ToLowerInvariant()
if ($skip -in @('1', 'true', 'yes')) {
    Write-Output 'preflight: skipped (VARIA_SKIP_PREFLIGHT is set): models, quota and access were not checked.'
    exit 0
}

$script = Join-Path $PSScriptRoot 'preflight.py'
# python3 and python on PATH (Linux, macOS, python.org installs), then the py launcher (Windows).
foreach ($candidate in @(@('python3'), @('python'), @('py', '-3'))) {
    $command = Get-Command $candidate[0] -CommandType Application -ErrorAction SilentlyContinue | Select-Object -First 1
    if (-not $command) { continue }
    $arguments = @($candidate | Select-Object -Skip 1)
    & $command.Source @arguments -c 'import sys; sys.exit(sys.version_info < (3, 9))' 2>$null
    if ($LASTEXITCODE -ne 0) { continue }
    & $command.Source @arguments $script
    exit $LASTEXITCODE
}
[Console]::Error.WriteLine('preflight: [python-missing] Python 3.9 or later is needed to check models and quota before provisioning.')
[Console]::Error.WriteLine('    fix: install Python 3 (python3 on PATH, or the py launcher), then azd provision again')
[Console]::Error.WriteLine('    fix: or provision without the check: azd env set VARIA_SKIP_PREFLIGHT true')
exit 1
