"""Compares the kernels of CUDA sources at a git revision with the working tree's, instruction by instruction in
PTX: for a change that could not run on a GPU, shows which kernels still compile to the instructions of the
version that did (a new template flag left off, say), so only the others wait for a device check.

  python3 tools/ptx-same.py REV native/src/moe_small.cu [more .cu files]

Kernels are paired by name and template arguments, trailing `false` bool arguments dropped (flags added to a kernel,
off where it takes its old path). Registers, labels, symbols and parameter names are normalised; a kernel is reported "same" when both
versions have the same multiset of instructions, with the count of lines that moved."""
import collections
import difflib
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ptx(root, rel):
    """PTX of the translation unit root/rel, compiled against root's native headers."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.ptx")
        try:
            subprocess.run(["nvcc", "-std=c++17", "-arch=sm_90", "-O3", "-I", os.path.join(root, "native", "include"), "-I",
                            os.path.join(root, "native", "src"), "-ptx", os.path.join(root, rel), "-o", out], check=True)
        except subprocess.CalledProcessError:
            sys.exit(f"{rel} in {root}: nvcc failed")
        with open(out) as f:
            return f.read()


def key(mangled):
    """The kernel's name and template arguments as mangled, without its namespaces and trailing `false` bools."""
    # _ZN, then the nested names each as its length and its text (the file's anonymous namespace, klc, ...), the
    # kernel's last; or _Z and the one name.
    i = 3 if mangled.startswith("_ZN") else 2
    base, rest = None, mangled
    while i < len(mangled) and mangled[i].isdigit():
        j = i
        while mangled[j].isdigit():
            j += 1
        n = int(mangled[i:j])
        base, rest = mangled[j : j + n], mangled[j + n :]
        i = j + n
    if base is None:
        sys.exit(f"no kernel name in {mangled}")
    args = rest[1:].split("Ev", 1)[0].rstrip("E") + "E" if rest.startswith("I") else ""
    # Flags added last, left false, name the kernel the revision had.
    while args.endswith("Lb0E"):
        args = args[: -len("Lb0E")]
    return base + "<" + args + ">"


def kernels(text):
    return {key(m.group(1)): m.group(2) for m in re.finditer(r"\.entry (\S+)\((.*?)\n\}\n", text, re.S)}


def normalised(body):
    lines = []
    for line in body.split("\n"):
        line = line.strip()
        if not line or line.startswith(("//", ".reg", ".loc", ".param", ".maxntid", ".minnctapersm", ".shared")):
            continue
        line = re.sub(r"%(r|rd|f|p|fd|rs|h|hh)\d+", r"%\1", line)
        line = re.sub(r"\$L__\w+", "L", line)
        line = re.sub(r"_ZZ?N\w+|__cudart_\w+", "SYM", line)
        line = re.sub(r"\[\w+_param_\d+(\+\d+)?\]", "[param]", line)
        lines.append(line)
    return lines


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    rev, files = sys.argv[1], sys.argv[2:]
    differ = 0
    with tempfile.TemporaryDirectory() as then:
        # The revision's whole native/ folder, so its sources compile against its own headers.
        archive = subprocess.run(["git", "-C", ROOT, "archive", rev, "native"], check=True, capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", then], input=archive, check=True)
        pairs = [(rel, kernels(ptx(then, rel)), kernels(ptx(ROOT, rel))) for rel in files]
    for rel, old, new in pairs:
        for k in sorted(old):
            if k not in new:
                print(f"{rel} {k}: gone")
                differ += 1
                continue
            a, b = normalised(old[k]), normalised(new[k])
            same = collections.Counter(a) == collections.Counter(b)
            moved = sum(1 for d in difflib.unified_diff(a, b, lineterm="", n=0) if d[:1] in "+-" and d[:3] not in ("+++", "---"))
            print(f"{rel} {k}: {'same' if same else 'DIFFERENT'} ({len(a)} vs {len(b)} instructions, {moved} lines moved or changed)")
            differ += not same
        for k in sorted(set(new) - set(old)):
            print(f"{rel} {k}: new")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
