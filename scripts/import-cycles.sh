#!/usr/bin/env bash
# Import cycles between the top-level modules of every crate target in the workspace (lib, main, bins).
# Prints each crate target's cycles; exits 1 when any cycle exists, 0 when every graph is a DAG.
#
# Usage: scripts/import-cycles.sh [--edges] [CRATE_DIR...]   (default: the workspace members)
#
# What counts as an edge `a -> b` (a, b top-level modules of one crate target, or `<root>` for
# items defined in lib.rs / main.rs itself):
#   - `crate::b…` anywhere in a's files (grouped `use crate::{b::X, c}` gives b and c);
#   - `super::…` / `self::…` that climb to the crate root and name b;
#   - in the root file, bare `b::…` paths (the root sees its modules by name).
# `crate::X` where X is re-exported by the root (`pub use b::X`) points at b, not at the root: a
# facade re-export is not a dependency of the root's own code. `mod` declarations are not edges.
# Comments (doc comments included: intra-doc links are not imports) and string literals are ignored.
# Edges only used in `#[cfg(test)]` code are left out unless --tests is given (then they are
# marked `(test)`); the count of cycles they would add is printed either way.
# tests/ and benches/ crates are not scanned.
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "$@" <<'PY'
import os
import re
import sys

SHOW_EDGES = False
WITH_TESTS = False
args = []
for a in sys.argv[1:]:
    if a == "--edges":
        SHOW_EDGES = True
    elif a == "--tests":
        WITH_TESTS = True
    else:
        args.append(a)

ROOT = "<root>"
IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def strip_code(src):
    """Blank out comments, string and char literals (newlines kept so offsets stay meaningful)."""
    out = []
    i, n = 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i))
            i = j
        elif src.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if src.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif src.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif (m := re.match(r'b?r(#*)"', src[i:i + 300])) and (i == 0 or not re.match(r"[A-Za-z0-9_]", src[i - 1])):
            end = '"' + m.group(1)
            j = src.find(end, i + m.end())
            j = n if j < 0 else j + len(end)
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c == '"' or (c == "b" and src.startswith('b"', i) and (i == 0 or not re.match(r"[A-Za-z0-9_]", src[i - 1]))):
            j = i + (2 if c == "b" else 1)
            while j < n and src[j] != '"':
                j += 2 if src[j] == "\\" else 1
            j = min(n, j + 1)
            out.append(re.sub(r"[^\n]", " ", src[i:j]))
            i = j
        elif c == "'":
            # A char literal ('x', '\n', '\u{..}') or a lifetime ('a): only the former has a closing quote.
            m = re.match(r"'(\\u\{[0-9a-fA-F]+\}|\\.|[^\\'])'", src[i:i + 12])
            if m:
                out.append(" " * m.end())
                i += m.end()
            else:
                out.append(c)
                i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


def matching_brace(code, open_pos):
    depth = 0
    for j in range(open_pos, len(code)):
        if code[j] == "{":
            depth += 1
        elif code[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(code)


def inline_mod_spans(code):
    """(start, end, name) of every inline `mod name { ... }`."""
    spans = []
    for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*\{", code):
        spans.append((m.end() - 1, matching_brace(code, m.end() - 1), m.group(1)))
    return spans


def test_spans(code):
    """Spans of items under `#[cfg(test)]`."""
    spans = []
    for m in re.finditer(r"#\s*\[\s*cfg\s*\(\s*test\s*\)\s*\]", code):
        j = m.end()
        semi = code.find(";", j)
        brace = code.find("{", j)
        if brace >= 0 and (semi < 0 or brace < semi):
            spans.append((m.start(), matching_brace(code, brace)))
        elif semi >= 0:
            spans.append((m.start(), semi))
    return spans


def split_group(text):
    """Top-level comma-separated items of a `{...}` use group (braces excluded)."""
    items, depth, cur = [], 0, []
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
        if ch == "," and depth == 0:
            items.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    if "".join(cur).strip():
        items.append("".join(cur).strip())
    return items


def first_names_after(code, pos):
    """Names referenced right after a path prefix ending at `pos` (just after `::`)."""
    rest = code[pos:]
    if rest.lstrip().startswith("{"):
        start = pos + (len(rest) - len(rest.lstrip()))
        end = matching_brace(code, start)
        names = []
        for item in split_group(code[start + 1:end]):
            m = re.match(r"(" + IDENT + r")", item)
            if m:
                names.append(m.group(1))
        return names
    m = re.match(r"\s*(" + IDENT + r")", rest)
    return [m.group(1)] if m else []


def module_files(src_dir, root_file):
    """Top-level modules declared in the root file -> list of their files (submodules included)."""
    code = strip_code(open(root_file, encoding="utf-8").read())
    mods = {}
    for m in re.finditer(r"(?:#\s*\[\s*path\s*=\s*\"([^\"]+)\"\s*\]\s*)?(?:pub(?:\([^)]*\))?\s+)?mod\s+(" + IDENT + r")\s*;", code):
        name = m.group(2)
        files = []
        for cand in (os.path.join(src_dir, name + ".rs"), os.path.join(src_dir, name, "mod.rs")):
            if os.path.isfile(cand):
                files.append(cand)
        sub = os.path.join(src_dir, name)
        if os.path.isdir(sub):
            for dp, _, fns in os.walk(sub):
                for fn in sorted(fns):
                    p = os.path.join(dp, fn)
                    if fn.endswith(".rs") and p not in files:
                        files.append(p)
        mods[name] = files
    return mods


def test_only_modules(root_code, mods):
    """Top-level modules declared under `#[cfg(test)]` in the root: every edge out of them is a test edge."""
    spans = test_spans(root_code)
    return {m.group(1) for m in re.finditer(r"\bmod\s+(" + IDENT + r")\s*;", root_code)
            if m.group(1) in mods and in_spans(m.start(), spans)}


def file_module_path(src_dir, path, top):
    rel = os.path.relpath(path, src_dir)[:-3].split(os.sep)
    if rel[-1] == "mod":
        rel = rel[:-1]
    if rel and rel[0] != top:
        rel = [top] + rel
    return rel


def root_reexports(code, mods):
    """`pub use m::X` / `pub use m::{X, Y as Z}` in the root: exported name -> module m."""
    out, globs = {}, []
    for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+(?:crate::|self::)?(" + IDENT + r")::", code):
        mod = m.group(1)
        if mod not in mods:
            continue
        end = code.find(";", m.end())
        tail = code[m.end():end].strip()
        items = split_group(tail[1:-1]) if tail.startswith("{") else [tail]
        for it in items:
            if it == "*":
                globs.append(mod)
                continue
            last = re.split(r"\s+as\s+", it)
            name = last[-1].strip().split("::")[-1].strip()
            if re.fullmatch(IDENT, name):
                out[name] = mod
    return out, globs


def reexport_spans(code):
    return [(m.start(), code.find(";", m.start())) for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\b", code)]


def in_spans(pos, spans):
    return any(a <= pos <= b for a, b in spans)


def analyse_target(src_dir, root_file):
    mods = module_files(src_dir, root_file)
    if not mods:
        return None
    root_code = strip_code(open(root_file, encoding="utf-8").read())
    reexp, globs = root_reexports(root_code, mods)
    glob_defs = {}
    for g in globs:
        for f in mods[g]:
            for m in re.finditer(r"\bpub\s+(?:struct|enum|fn|trait|type|const|static|mod|use)\s+(" + IDENT + r")", strip_code(open(f, encoding="utf-8").read())):
                glob_defs.setdefault(m.group(1), g)

    def resolve(name):
        if name in ("self", "super", "crate"):
            return None
        if name in mods:
            return name
        if name in reexp:
            return reexp[name]
        if name in glob_defs:
            return glob_defs[name]
        return ROOT

    edges = {}  # (a, b) -> True when used outside test code

    def add(a, b, is_test):
        if b is None or a == b:
            return
        edges[(a, b)] = edges.get((a, b), False) or not is_test

    test_mods = test_only_modules(root_code, mods)

    def scan(owner, code, base_path, is_root):
        tests = [(0, len(code))] if owner in test_mods else test_spans(code)
        inline = inline_mod_spans(code)
        skip = reexport_spans(code) if is_root else []
        for m in re.finditer(r"(?<![A-Za-z0-9_$:])crate::", code):
            if re.search(r"\bin\s+$", code[max(0, m.start() - 8):m.start()]) or in_spans(m.start(), skip):
                continue
            for name in first_names_after(code, m.end()):
                add(owner, resolve(name), in_spans(m.start(), tests))
        for m in re.finditer(r"(?<![A-Za-z0-9_$:])((?:super::)+|self::)", code):
            if in_spans(m.start(), skip):
                continue
            path = base_path + [s[2] for s in inline if s[0] < m.start() < s[1]]
            if m.group(1) == "self::":
                base = path
            else:
                ups = m.group(1).count("super::")
                if ups > len(path):
                    continue
                base = path[:len(path) - ups]
            is_test = in_spans(m.start(), tests)
            if base:
                add(owner, base[0] if base[0] in mods else None, is_test)
            else:
                for name in first_names_after(code, m.end()):
                    add(owner, resolve(name), is_test)
        if is_root:
            for m in re.finditer(r"(?<![A-Za-z0-9_$:])(" + IDENT + r")::", code):
                if m.group(1) in mods and not in_spans(m.start(), skip):
                    add(owner, m.group(1), in_spans(m.start(), tests))

    scan(ROOT, root_code, [], True)
    for name, files in mods.items():
        for f in files:
            code = strip_code(open(f, encoding="utf-8").read())
            scan(name, code, file_module_path(src_dir, f, name), False)
    return sorted(mods), edges


def simple_cycles(nodes, edges):
    """Every elementary cycle, each reported once starting at its smallest node."""
    adj = {n: sorted({b for (a, b) in edges if a == n}) for n in nodes}
    order = {n: i for i, n in enumerate(sorted(nodes))}
    cycles = []

    def dfs(start, node, path, on_path):
        for nxt in adj.get(node, []):
            if nxt == start:
                cycles.append(path + [start])
            elif nxt not in on_path and order[nxt] > order[start]:
                on_path.add(nxt)
                dfs(start, nxt, path + [nxt], on_path)
                on_path.discard(nxt)
            if len(cycles) > 10000:
                return

    for s in sorted(nodes):
        dfs(s, s, [s], {s})
    return cycles


def targets(crate_dir):
    src = os.path.join(crate_dir, "src")
    out = []
    for kind, f in (("lib", "lib.rs"), ("bin", "main.rs")):
        p = os.path.join(src, f)
        if os.path.isfile(p):
            out.append((kind, src, p))
    bindir = os.path.join(src, "bin")
    if os.path.isdir(bindir):
        for e in sorted(os.listdir(bindir)):
            p = os.path.join(bindir, e)
            if e.endswith(".rs"):
                out.append(("bin " + e[:-3], bindir, p))
            elif os.path.isfile(os.path.join(p, "main.rs")):
                out.append(("bin " + e, p, os.path.join(p, "main.rs")))
    return out


def workspace_members():
    text = open("Cargo.toml", encoding="utf-8").read()
    m = re.search(r"members\s*=\s*\[([^\]]*)\]", text)
    return re.findall(r'"([^"]+)"', m.group(1)) if m else []


crates = args or workspace_members()
total = 0
for crate in crates:
    for kind, src_dir, root_file in targets(crate):
        res = analyse_target(src_dir, root_file)
        if res is None:
            continue
        mods, all_edges = res
        # A `#[cfg(test)]` child module is compiled only into the test build: its uses of the
        # test kit are not edges of the library's own graph unless --tests asks for them.
        edges = all_edges if WITH_TESTS else {e: p for e, p in all_edges.items() if p}
        nodes = mods + ([ROOT] if any(ROOT in e for e in edges) else [])
        cycles = simple_cycles(nodes, edges)
        total += len(cycles)
        if not WITH_TESTS:
            through_tests = len(simple_cycles(nodes, all_edges)) - len(cycles)
        else:
            through_tests = 0
        label = f"{crate} ({kind}, {os.path.relpath(root_file, crate)})"
        extra = f" (+{through_tests} through test-only code: --tests)" if through_tests else ""
        print(f"{label}: {len(mods)} modules, {len(edges)} edges, {len(cycles)} cycle(s){extra}")
        if SHOW_EDGES:
            for (a, b), prod in sorted(edges.items()):
                print(f"    edge {a} -> {b}{'' if prod else ' (test)'}")
        for c in cycles:
            parts = []
            for a, b in zip(c, c[1:]):
                parts.append(f" -> {b}" + ("" if edges[(a, b)] else " (test)"))
            print("    " + c[0] + "".join(parts))
print(f"total: {total} cycle(s)")
sys.exit(1 if total else 0)
PY
