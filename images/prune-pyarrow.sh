#!/bin/sh
# The model server uses pyarrow for one thing: writing payload-capture chunks as Parquet
# (serving/capture.py: pyarrow, pyarrow.compute, pyarrow.parquet). Remove the parts of the
# wheel it never loads: Flight, the S3/GCS/Azure/HDFS filesystems, ORC, CSV, JSON, Feather, the
# dataset/Acero/Substrait Python modules (their C++ libraries stay: lib.so links them), the C++
# test module and two duplicate copies of libarrow_python. About 60 MB of 160 (measured on
# pyarrow 26: a pruned copy imports, writes and reads the capture chunks).
#   prune-pyarrow.sh VENV
set -eu
venv=${1:?usage: prune-pyarrow.sh VENV}
pa=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/pyarrow
cd "$pa"
rm -f libarrow_flight.so* libarrow_s3.so* libarrow_python_flight.so* libarrow_python_parquet_encryption.so* \
      _flight.*.so _dataset*.so _acero.*.so _substrait.*.so _orc.*.so _s3fs.*.so _gcsfs.*.so _azurefs.*.so \
      _hdfs.*.so _feather.*.so _csv.*.so _json.*.so _parquet_encryption.*.so _pyarrow_cpp_tests.*.so
# pip writes the symlinks of libarrow_python as copies; the loader asks for .so.<major> only
for f in libarrow_python.so libarrow_python.so.*.*.*; do [ -e "$f" ] && [ ! -L "$f" ] && rm -f "$f"; done
cd /  # not from inside the package: its types.py would shadow the standard library's
"$venv/bin/python" -c "import pyarrow.parquet, pyarrow.compute"
