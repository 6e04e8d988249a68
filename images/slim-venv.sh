#!/bin/sh
# Slim a built virtualenv for an image (run in the build stage):
#   slim-venv.sh VENV [MODULE...]
# no pip/setuptools, no test suites or C sources/headers of the installed packages, extension
# modules stripped of symbols when `strip` is there (not the auditwheel-vendored *.libs/ files:
# stripping those patched libraries breaks them), every module precompiled (hash-based .pyc,
# valid whatever the files' mtimes after COPY) so the image runs with readOnlyRootFilesystem and
# PYTHONDONTWRITEBYTECODE=1, then MODULEs imported as a smoke test of the result.
set -eu
venv=${1:?usage: slim-venv.sh VENV [MODULE...]}
shift
py="$venv/bin/python"
"$py" -m pip uninstall -q -y --disable-pip-version-check pip setuptools wheel >/dev/null 2>&1 || true
site=$("$py" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
find "$site" -depth -type d \( -name tests -o -name __pycache__ \) -exec rm -rf {} +
rm -rf "$site/onnx/backend/test/data" "$site/onnxruntime/transformers" "$site/onnxruntime/quantization" \
       "$site/pyarrow/include" "$site/pyarrow/src" "$site/numpy/_core/include" "$site/numpy/f2py/src" \
       "$site/numpy/distutils"
find "$site" -type f \( -name '*.pyx' -o -name '*.pxd' -o -name '*.pxi' -o -name '*.h' -o -name '*.hpp' \
       -o -name '*.c' -o -name '*.cpp' \) -delete
if command -v strip >/dev/null; then
  find "$site" -path '*.libs/*' -prune -o -type f -name '*.so*' -exec strip --strip-unneeded {} +
fi
"$py" -m compileall -q -j 0 --invalidation-mode unchecked-hash "$site" >/dev/null
for m in "$@"; do "$py" -c "import $m" || { echo "slim-venv.sh: import $m fails after slimming" >&2; exit 1; }; done
