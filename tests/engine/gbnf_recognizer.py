"""A small GBNF parser and Earley recognizer for tests.

It reads the grammar dialect described in llama.cpp's ``grammars/README.md`` (rules,
literals, character classes, ``.``, groups, alternatives, ``* + ? {m} {m,} {m,n}``,
comments) and rejects what llama.cpp's parser rejects (undefined rules, missing ``root``,
left recursion, repetition counts beyond its limit). ``Grammar.accepts(text)`` tells
whether ``text`` is in the language of the ``root`` rule. Token syntax (``<...>``) is not
supported: our converters never emit it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_REPETITION = 2000


class GbnfError(ValueError):
    """The grammar text does not parse, or llama.cpp would refuse it."""


@dataclass(frozen=True)
class CharSet:
    ranges: tuple[tuple[int, int], ...]
    negated: bool

    def matches(self, code: int) -> bool:
        return any(lo <= code <= hi for lo, hi in self.ranges) != self.negated


Symbol = CharSet | str  # a str is a rule name


@dataclass
class Grammar:
    rules: dict[str, list[list[Symbol]]] = field(default_factory=dict)

    def accepts(self, text: str, root: str = "root") -> bool:
        return _earley(self, [ord(c) for c in text], root)


class _Parser:
    def __init__(self, text: str) -> None:
        self.src = text
        self.pos = 0
        self.grammar = Grammar()
        self.seen: list[str] = []  # symbol ids in creation order, as llama numbers them
        self.defined: set[str] = set()
        self.counter = 0

    # -- lexing helpers

    def fail(self, what: str) -> GbnfError:
        line = self.src.count("\n", 0, self.pos) + 1
        return GbnfError(f"{what} at line {line}: {self.src[self.pos : self.pos + 30]!r}")

    def peek(self, k: int = 0) -> str:
        i = self.pos + k
        return self.src[i] if i < len(self.src) else ""

    def space(self, newline_ok: bool) -> None:
        while self.pos < len(self.src):
            ch = self.src[self.pos]
            if ch == "#":
                while self.pos < len(self.src) and self.src[self.pos] not in "\r\n":
                    self.pos += 1
            elif ch in " \t" or (newline_ok and ch in "\r\n"):
                self.pos += 1
            else:
                break

    def name(self) -> str:
        start = self.pos
        while self.peek() and (
            self.peek().isascii() and (self.peek().isalnum() or self.peek() == "-")
        ):
            self.pos += 1
        if self.pos == start:
            raise self.fail("expecting name")
        return self.src[start : self.pos]

    def symbol_id(self, name: str) -> None:
        if name not in self.seen:
            self.seen.append(name)

    def fresh(self, base: str) -> str:
        self.counter += 1
        name = f"{base}_{self.counter}"
        self.seen.append(name)
        return name

    def char(self) -> int:
        ch = self.peek()
        if not ch:
            raise self.fail("unexpected end of input")
        if ch != "\\":
            self.pos += 1
            return ord(ch)
        esc = self.peek(1)
        simple = {"t": 9, "r": 13, "n": 10, "\\": 92, '"': 34, "[": 91, "]": 93, "-": 45}
        if esc in simple:
            self.pos += 2
            return simple[esc]
        sizes = {"x": 2, "u": 4, "U": 8}
        if esc not in sizes:
            raise self.fail("unknown escape")
        digits = self.src[self.pos + 2 : self.pos + 2 + sizes[esc]]
        if len(digits) != sizes[esc] or any(c not in "0123456789abcdefABCDEF" for c in digits):
            raise self.fail(f"expecting {sizes[esc]} hex chars")
        self.pos += 2 + sizes[esc]
        return int(digits, 16)

    # -- grammar

    def parse(self) -> Grammar:
        self.space(True)
        while self.pos < len(self.src):
            self.rule()
        for name in self.seen:
            if name not in self.grammar.rules:
                raise GbnfError(f"undefined rule {name!r}")
        if "root" not in self.grammar.rules:
            raise GbnfError("grammar has no 'root' rule")
        _check_left_recursion(self.grammar)
        return self.grammar

    def rule(self) -> None:
        name = self.name()
        self.symbol_id(name)
        self.space(False)
        if not self.src.startswith("::=", self.pos):
            raise self.fail("expecting ::=")
        self.pos += 3
        self.space(True)
        if name in self.defined:
            raise self.fail(f"rule {name!r} defined twice")
        self.defined.add(name)
        self.grammar.rules[name] = self.alternates(name, nested=False)
        if self.peek() == "\r":
            self.pos += 2 if self.peek(1) == "\n" else 1
        elif self.peek() == "\n":
            self.pos += 1
        elif self.peek():
            raise self.fail("expecting newline or end")
        self.space(True)

    def alternates(self, name: str, nested: bool) -> list[list[Symbol]]:
        alts = [self.sequence(name, nested)]
        while self.peek() == "|":
            self.pos += 1
            self.space(True)
            alts.append(self.sequence(name, nested))
        return alts

    def sequence(self, name: str, nested: bool) -> list[Symbol]:
        seq: list[Symbol] = []
        last: list[Symbol] | None = None  # symbols of the last item, for repetition
        last_rules = 1
        while self.pos < len(self.src):
            ch = self.peek()
            if ch == '"':
                self.pos += 1
                last = []
                while self.peek() != '"':
                    code = self.char()
                    last.append(CharSet(((code, code),), False))
                self.pos += 1
                last_rules = 1
            elif ch == "[":
                self.pos += 1
                negated = self.peek() == "^"
                if negated:
                    self.pos += 1
                ranges = []
                while self.peek() != "]":
                    lo = self.char()
                    hi = lo
                    if self.peek() == "-" and self.peek(1) not in ("]", ""):
                        self.pos += 1
                        hi = self.char()
                    ranges.append((lo, hi))
                self.pos += 1
                last = [CharSet(tuple(ranges), negated)]
                last_rules = 1
            elif ch == ".":
                self.pos += 1
                last = [CharSet((), True)]
                last_rules = 1
            elif ch.isascii() and (ch.isalnum() or ch == "-"):
                ref = self.name()
                self.symbol_id(ref)
                last = [ref]
                last_rules = 1
            elif ch == "(":
                self.pos += 1
                self.space(True)
                before = len(self.seen)
                sub = self.fresh(name)
                self.grammar.rules[sub] = self.alternates(name, nested=True)
                if self.peek() != ")":
                    raise self.fail("expecting ')'")
                self.pos += 1
                last = [sub]
                last_rules = max(1, len(self.seen) - before)
            elif ch in "*+?{":
                if last is None:
                    raise self.fail("expecting preceding item to */+/?/{")
                lo, hi = self.repetition()
                del seq[len(seq) - len(last) :]
                total = hi if hi not in (None, 0) else max(lo, 1)
                if last_rules * total > MAX_REPETITION:
                    raise self.fail("repetition exceeds llama.cpp's limit")
                last = self.repeat(name, last, lo, hi)
                last_rules *= total
                seq.extend(last)
                self.space(nested)
                continue
            else:
                break
            seq.extend(last)
            self.space(nested)
        return seq

    def repetition(self) -> tuple[int, int | None]:
        ch = self.peek()
        self.pos += 1
        if ch in "*+?":
            return {"*": (0, None), "+": (1, None), "?": (0, 1)}[ch]
        self.space(False)
        lo = self.integer()
        self.space(False)
        if self.peek() == "}":
            self.pos += 1
            hi: int | None = lo
        elif self.peek() == ",":
            self.pos += 1
            self.space(False)
            hi = self.integer() if self.peek().isdigit() else None
            self.space(False)
            if self.peek() != "}":
                raise self.fail("expecting '}'")
            self.pos += 1
        else:
            raise self.fail("expecting ',' or '}'")
        if lo > MAX_REPETITION:
            raise self.fail("repetition count exceeds llama.cpp's limit")
        if hi is not None and hi > MAX_REPETITION:
            hi = None
        return lo, hi

    def integer(self) -> int:
        start = self.pos
        while self.peek().isdigit():
            self.pos += 1
        if start == self.pos:
            raise self.fail("expecting an integer")
        return int(self.src[start : self.pos])

    def repeat(self, name: str, item: list[Symbol], lo: int, hi: int | None) -> list[Symbol]:
        out: list[Symbol] = []
        for _ in range(lo):
            out.extend(item)
        if hi is None:
            rec = self.fresh(name)
            self.grammar.rules[rec] = [[*item, rec], []]
            out.append(rec)
        elif hi > lo:
            prev: str | None = None
            for _ in range(hi - lo):
                rec = self.fresh(name)
                self.grammar.rules[rec] = [[*item, prev] if prev else list(item), []]
                prev = rec
            assert prev is not None
            out.append(prev)
        return out


def _nullable(grammar: Grammar) -> set[str]:
    nullable: set[str] = set()
    changed = True
    while changed:
        changed = False
        for name, alts in grammar.rules.items():
            if name not in nullable and any(
                all(isinstance(s, str) and s in nullable for s in alt) for alt in alts
            ):
                nullable.add(name)
                changed = True
    return nullable


def _check_left_recursion(grammar: Grammar) -> None:
    nullable = _nullable(grammar)
    edges: dict[str, set[str]] = {}
    for name, alts in grammar.rules.items():
        targets: set[str] = set()
        for alt in alts:
            for sym in alt:
                if isinstance(sym, CharSet):
                    break
                targets.add(sym)
                if sym not in nullable:
                    break
        edges[name] = targets
    state: dict[str, int] = {}

    def visit(node: str) -> None:
        state[node] = 1
        for nxt in edges.get(node, ()):
            if state.get(nxt) == 1:
                raise GbnfError(f"left recursion through rule {nxt!r}")
            if nxt not in state:
                visit(nxt)
        state[node] = 2

    for name in grammar.rules:
        if name not in state:
            visit(name)


def parse_gbnf(text: str) -> Grammar:
    """Parse GBNF text; raises :class:`GbnfError` where llama.cpp's parser would fail."""
    return _Parser(text).parse()


def _earley(grammar: Grammar, codes: list[int], root: str) -> bool:
    rules = grammar.rules
    nullable = _nullable(grammar)
    # item: (rule, alt index, dot, origin)
    chart: list[list[tuple[str, int, int, int]]] = [[] for _ in range(len(codes) + 1)]
    seen: list[set[tuple[str, int, int, int]]] = [set() for _ in range(len(codes) + 1)]

    def add(i: int, item: tuple[str, int, int, int]) -> None:
        if item not in seen[i]:
            seen[i].add(item)
            chart[i].append(item)

    for a in range(len(rules[root])):
        add(0, (root, a, 0, 0))
    for i in range(len(codes) + 1):
        j = 0
        while j < len(chart[i]):
            name, alt, dot, origin = chart[i][j]
            j += 1
            body = rules[name][alt]
            if dot == len(body):
                for pname, palt, pdot, porigin in list(chart[origin]):
                    pbody = rules[pname][palt]
                    if pdot < len(pbody) and pbody[pdot] == name:
                        add(i, (pname, palt, pdot + 1, porigin))
                continue
            sym = body[dot]
            if isinstance(sym, str):
                for a in range(len(rules[sym])):
                    add(i, (sym, a, 0, i))
                if sym in nullable:
                    add(i, (name, alt, dot + 1, origin))
            elif i < len(codes) and sym.matches(codes[i]):
                add(i + 1, (name, alt, dot + 1, origin))
        if i < len(codes) and not chart[i + 1]:
            return False
    return any(
        name == root and dot == len(rules[name][alt]) and origin == 0
        for name, alt, dot, origin in chart[len(codes)]
    )
