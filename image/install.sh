#!/bin/sh
# Runs inside the image's root, in both build paths (scripts/build-image.sh and the Containerfile):
# installs the operator from a wheelhouse, adds its user, and removes what an operator never runs.
#   install.sh install WHEELHOUSE   (the locked wheels, pip's wheel and the modelrollout wheel)
#   install.sh prune ROOT           (last: mmdebstrap needs apt until its own cleanup is done)
set -eu
here=$(dirname "$0")

if [ "$1" = prune ]; then
    root=${2%/}
    while read -r line; do
        case "$line" in ''|'#'*) continue ;; esac
        for pattern in $line; do
            # shellcheck disable=SC2086  # the patterns are globs on purpose
            rm -rf "$root"$pattern
        done
    done <"$here/prune.txt"
    exit 0
fi
wheels=$2
# Only what this script says: no PIP_* settings or index from the building machine.
unset $(env | sed -n 's/^\(PIP_[A-Z_]*\)=.*/\1/p')

python3 -m venv --without-pip /opt/modelrollout
# pip runs from its own wheel, so it is never installed into the image.
pip="/opt/modelrollout/bin/python $(ls "$wheels"/pip-*.whl)/pip"
$pip install --quiet --no-cache-dir --no-compile --no-index --find-links "$wheels" \
    --require-hashes -r "$here/requirements.lock"
$pip install --quiet --no-cache-dir --no-compile --no-index --no-deps "$wheels"/modelrollout-*.whl
# Compiled once here: the root filesystem is read-only at run time.
/opt/modelrollout/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash \
    /opt/modelrollout/lib /usr/lib/python3.11 >/dev/null

# The non-root user the Deployment's securityContext names.
echo 'nonroot:x:65532:65532:modelrollout:/nonexistent:/usr/sbin/nologin' >>/etc/passwd
echo 'nonroot:x:65532:' >>/etc/group

# What the operator's dpkg-status tells scanners it ships, before the package manager goes.
mkdir -p /usr/share/modelrollout
dpkg-query -W -f='${Package} ${Version}\n' >/usr/share/modelrollout/debian-packages.txt
