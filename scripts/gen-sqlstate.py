#!/usr/bin/env python3
"""Generate src/proto/sqlstate.rs from PostgreSQL's errcodes.txt.

Usage: scripts/gen-sqlstate.py [ERRCODES_TXT] > src/proto/sqlstate.rs
The default input is `$(pg_config --sharedir)/errcodes.txt`.
"""
import subprocess
import sys


def main() -> None:
    if len(sys.argv) > 1:
        path = sys.argv[1]
    else:
        share = subprocess.check_output(["pg_config", "--sharedir"], text=True).strip()
        path = f"{share}/errcodes.txt"
    rows = []
    seen = set()
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#") or line.startswith("Section:"):
                continue
            parts = line.split()
            if len(parts) < 3:
                continue
            code, _kind, macro = parts[0], parts[1], parts[2]
            name = macro.removeprefix("ERRCODE_")
            if name in seen:
                continue
            seen.add(name)
            rows.append((name, code))
    out = [
        "//! SQLSTATE codes, generated from PostgreSQL's `errcodes.txt` by `scripts/gen-sqlstate.py`.",
        "//! Do not edit by hand: regenerate instead.",
        "",
        "/// A five-character SQLSTATE error code.",
        "#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]",
        "pub struct SqlState(&'static str);",
        "",
        "impl SqlState {",
        "    /// The five-character code, as sent in the `C` field of an ErrorResponse.",
        "    pub const fn code(&self) -> &'static str {",
        "        self.0",
        "    }",
        "",
    ]
    for name, code in rows:
        out.append(f"    /// `{code}`")
        out.append(f"    pub const {name}: SqlState = SqlState(\"{code}\");")
    out.append("}")
    print("\n".join(out))


if __name__ == "__main__":
    main()
