"""Parsing for sandbox/terraform/hcl_eval.py: python-hcl2 reads the .tf files; the expressions
it hands back as text ("${...}" or a quoted template) are parsed here into small tuples.
Only the subset of HCL that infra/ is written in is understood; anything else raises
HclError naming the construct."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

import hcl2

__all__ = ["HclError", "Node", "is_meta", "parse_expression", "parse_tf", "unquote"]


class HclError(Exception):
    """An expression could not be evaluated (a missing key is one: `try` catches it)."""


def parse_tf(path: Path) -> dict[str, Any]:
    with path.open() as f:
        return hcl2.load(f, serialization_options=hcl2.SerializationOptions(with_comments=False))


def unquote(label: str) -> str:
    return label[1:-1] if len(label) >= 2 and label[0] == label[-1] == '"' else label


def is_meta(key: str) -> bool:
    return key.startswith("__") and key.endswith("__")


# --- parsing ----------------------------------------------------------------------------

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_NUMBER = re.compile(r"[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?")
_BINARY = [("||",), ("&&",), ("==", "!="), ("<=", ">=", "<", ">"), ("+", "-"), ("*", "/", "%")]
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}

Node = tuple[Any, ...]


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, what: str) -> HclError:
        return HclError(f"{what} at offset {self.pos} of {self.text!r}")

    def ws(self) -> None:
        while self.pos < len(self.text):
            if self.text[self.pos].isspace():
                self.pos += 1
            elif self.text.startswith(("#", "//"), self.pos):
                end = self.text.find("\n", self.pos)
                self.pos = len(self.text) if end < 0 else end
            elif self.text.startswith("/*", self.pos):
                end = self.text.find("*/", self.pos)
                self.pos = len(self.text) if end < 0 else end + 2
            else:
                return

    def peek(self, token: str) -> bool:
        self.ws()
        return self.text.startswith(token, self.pos)

    def take(self, token: str) -> bool:
        if self.peek(token):
            self.pos += len(token)
            return True
        return False

    def expect(self, token: str) -> None:
        if not self.take(token):
            raise self.fail(f"expected {token!r}")

    def keyword(self, word: str) -> bool:
        self.ws()
        m = _IDENT.match(self.text, self.pos)
        if m and m.group() == word:
            self.pos = m.end()
            return True
        return False

    def ident(self) -> str:
        self.ws()
        m = _IDENT.match(self.text, self.pos)
        if not m:
            raise self.fail("expected a name")
        self.pos = m.end()
        return m.group()

    def at_end(self) -> bool:
        self.ws()
        return self.pos == len(self.text)

    # expression := binary ('?' expression ':' expression)?
    def expression(self) -> Node:
        cond = self.binary(0)
        if self.take("?"):
            yes = self.expression()
            self.expect(":")
            no = self.expression()
            return ("cond", cond, yes, no)
        return cond

    def binary(self, level: int) -> Node:
        if level == len(_BINARY):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            self.ws()
            op = next((o for o in _BINARY[level] if self.text.startswith(o, self.pos)), None)
            # '=>' and '==' are not '=' ; '<='/'>=' are tried before '<'/'>'
            if op is None or (op in ("<", ">") and self.text.startswith(op + "=", self.pos)):
                return left
            self.pos += len(op)
            left = ("binop", op, left, self.binary(level + 1))

    def unary(self) -> Node:
        if self.take("!"):
            return ("not", self.unary())
        if self.peek("-") and not _NUMBER.match(self.text, self.pos + 1):
            self.pos += 1
            return ("neg", self.unary())
        return self.postfix(self.primary())

    def postfix(self, node: Node) -> Node:
        while True:
            if self.peek("...") or self.peek(".*") or self.peek("[*]"):
                if self.peek(".*") or self.peek("[*]"):
                    raise self.fail("splat expressions are outside the supported subset")
                return node
            if self.take("."):
                node = ("get", node, self.ident())
            elif self.take("["):
                key = self.expression()
                self.expect("]")
                node = ("index", node, key)
            else:
                return node

    def primary(self) -> Node:
        self.ws()
        text, pos = self.text, self.pos
        if pos >= len(text):
            raise self.fail("unexpected end")
        ch = text[pos]
        if ch == '"':
            return self.template()
        if ch == "(":
            self.pos += 1
            inner = self.expression()
            self.expect(")")
            return inner
        if ch == "[":
            self.pos += 1
            return self.for_expr("]") if self.keyword("for") else self.tuple_items()
        if ch == "{":
            self.pos += 1
            return self.for_expr("}") if self.keyword("for") else self.object_items()
        if ch == "-" or ch.isdigit():
            m = re.compile(r"-?" + _NUMBER.pattern).match(text, pos)
            if not m:
                raise self.fail("bad number")
            self.pos = m.end()
            value = float(m.group()) if any(c in m.group() for c in ".eE") else int(m.group())
            return ("lit", value)
        if text.startswith("<<", pos):
            raise self.fail("heredocs are outside the supported subset")
        name = self.ident()
        if name in ("true", "false"):
            return ("lit", name == "true")
        if name == "null":
            return ("lit", None)
        if self.take("("):
            args: list[Node] = []
            expand = False
            while not self.take(")"):
                args.append(self.expression())
                if self.take("..."):
                    expand = True
                if not self.take(","):
                    self.expect(")")
                    break
            return ("call", name, args, expand)
        return ("var", name)

    def template(self) -> Node:
        self.pos += 1  # the opening quote
        parts: list[Any] = []
        buf: list[str] = []
        text = self.text
        while True:
            if self.pos >= len(text):
                raise self.fail("unterminated string")
            ch = text[self.pos]
            if ch == '"':
                self.pos += 1
                break
            if ch == "\\":
                esc = text[self.pos + 1 : self.pos + 2]
                if esc == "u":
                    buf.append(chr(int(text[self.pos + 2 : self.pos + 6], 16)))
                    self.pos += 6
                    continue
                if esc not in _ESCAPES:
                    raise self.fail(f"unknown escape \\{esc}")
                buf.append(_ESCAPES[esc])
                self.pos += 2
            elif text.startswith("$${", self.pos) or text.startswith("%%{", self.pos):
                buf.append(text[self.pos + 1 : self.pos + 3])
                self.pos += 3
            elif text.startswith("${", self.pos):
                if buf:
                    parts.append("".join(buf))
                    buf = []
                self.pos += 2
                self.take("~")
                parts.append(self.expression())
                self.take("~")
                self.expect("}")
            elif text.startswith("%{", self.pos):
                raise self.fail("template directives are outside the supported subset")
            else:
                buf.append(ch)
                self.pos += 1
        if buf or not parts:
            parts.append("".join(buf))
        return ("template", parts)

    def tuple_items(self) -> Node:
        items: list[Node] = []
        while not self.take("]"):
            items.append(self.expression())
            if not self.take(","):
                self.expect("]")
                break
        return ("tuple", items)

    def object_items(self) -> Node:
        items: list[tuple[Node, Node]] = []
        while not self.take("}"):
            self.ws()
            m = _IDENT.match(self.text, self.pos)
            after = self.text[m.end() :].lstrip() if m else ""
            if m and (after.startswith(":") or (after.startswith("=") and not after.startswith(("==", "=>")))):
                self.pos = m.end()
                key: Node = ("lit", m.group())
            else:
                key = self.expression()
            if not self.take("="):
                self.expect(":")
            items.append((key, self.expression()))
            self.take(",")
        return ("object", items)

    def for_expr(self, close: str) -> Node:
        first = self.ident()
        second = self.ident() if self.take(",") else None
        if not self.keyword("in"):
            raise self.fail("expected 'in'")
        collection = self.expression()
        self.expect(":")
        key = None
        if close == "}":
            key = self.expression()
            self.expect("=>")
        value = self.expression()
        group = close == "}" and self.take("...")
        cond = self.expression() if self.keyword("if") else None
        self.expect(close)
        key_var, value_var = (first, second) if second else (None, first)
        return ("for", close, key_var, value_var, collection, key, value, group, cond)


@lru_cache(maxsize=4096)
def parse_expression(text: str) -> Node:
    """Parses one expression as python-hcl2 renders it: "${...}" or a quoted template."""
    parser = _Parser(text)
    if text.startswith("${"):
        parser.pos = 2
        node = parser.expression()
        parser.expect("}")
    else:
        node = parser.expression()
    if not parser.at_end():
        raise parser.fail("unexpected text after the expression")
    return node
