#!/usr/bin/env bash
# Check protos/ for changes that break wire or generated-code compatibility, with
# `buf breaking` (rules: FILE, set in protos/buf.yaml), against an earlier version of main.
#
# Usage: scripts/buf_breaking.sh [GIT_REF]
#
# Run it from the root of a clone. The version compared against is, in this order:
#   1. GIT_REF, or $TRUSTFIRST_BUF_AGAINST;
#   2. the merge base of HEAD and `main`, when HEAD is not main's tip (a feature branch),
#      so that changes made on main since the branch point do not count against it;
#   3. HEAD, when HEAD is main's tip and protos/ has uncommitted changes;
#   4. HEAD~1 otherwise. In CI the clone's main is the commit under test, so this compares
#      it with the commit before it. A first commit has nothing to compare with.
# A shallow clone without HEAD~1 is an error: fetch one more commit (git fetch --deepen=1).
#
# buf comes from $BUF, else .tools/node_modules/.bin/buf (npm install --prefix .tools
# @bufbuild/buf), else PATH. Exit status: 0 compatible or nothing to compare, 1 breaking
# changes found (buf lists them), 2 a usage or set-up error.
set -euo pipefail

tools_root="$(cd "$(dirname "$0")/.." && pwd)"
buf="${BUF:-}"
if [[ -z "$buf" && -x "$tools_root/.tools/node_modules/.bin/buf" ]]; then
  buf="$tools_root/.tools/node_modules/.bin/buf"
fi
if [[ -z "$buf" ]]; then
  buf="$(command -v buf || true)"
fi
if [[ -z "$buf" ]]; then
  echo "buf_breaking: buf not found; install it with npm install --prefix .tools @bufbuild/buf" >&2
  exit 2
fi

if ! repo="$(git rev-parse --show-toplevel 2>/dev/null)"; then
  echo "buf_breaking: $(pwd) is not inside a git clone" >&2
  exit 2
fi
cd "$repo"

has_commit() {
  git rev-parse --verify --quiet "$1^{commit}" >/dev/null
}

against="${1:-${TRUSTFIRST_BUF_AGAINST:-}}"
if [[ -z "$against" ]]; then
  if has_commit main && [[ "$(git rev-parse HEAD)" != "$(git rev-parse main)" ]]; then
    if ! against="$(git merge-base HEAD main)"; then
      echo "buf_breaking: HEAD and main have no common commit; pass a git ref" >&2
      exit 2
    fi
    label="the merge base with main"
  elif ! git diff --quiet HEAD -- protos; then
    against=HEAD
  elif has_commit HEAD~1; then
    against=HEAD~1
  elif [[ "$(git rev-parse --is-shallow-repository)" == "true" ]]; then
    echo "buf_breaking: shallow clone without HEAD~1; run git fetch --deepen=1" >&2
    exit 2
  else
    echo "buf_breaking: HEAD is the first commit; no earlier protos to compare with"
    exit 0
  fi
fi

if ! has_commit "$against"; then
  echo "buf_breaking: unknown git ref $against" >&2
  exit 2
fi
commit="$(git rev-parse "$against^{commit}")"
label="${label:-$against}"
if ! git cat-file -e "$commit:protos/buf.yaml" 2>/dev/null; then
  echo "buf_breaking: $label ($commit) has no protos/buf.yaml; nothing to compare with"
  exit 0
fi

git_dir="$(git rev-parse --path-format=absolute --git-common-dir)"
echo "buf_breaking: comparing protos/ with $label ($commit)"
status=0
"$buf" breaking protos --against "$git_dir#ref=$commit,subdir=protos" || status=$?
if [[ "$status" -ne 0 ]]; then
  # buf exits 100 when it finds breaking changes and 1 on other failures.
  if [[ "$status" -eq 100 ]]; then
    exit 1
  fi
  exit 2
fi
echo "buf_breaking: no breaking changes"
