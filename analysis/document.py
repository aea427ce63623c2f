"""The report as a document: a list of blocks (headings, paragraphs, tables, plots, ...) and
its two renderers, self-contained HTML and Markdown with PNGs.

The report's content is assembled once as blocks (`analysis.report`) and rendered to each
format here, so the HTML and the Markdown can never disagree. Text is escaped for each
format (much of it comes from a run's files); only `backticks` become code.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from analysis import plots
from trainables import run_files


@dataclass
class Heading:
    level: int
    text: str


@dataclass
class Para:
    text: str  # plain text; `backticks` become code
    css: str = ""


@dataclass
class Facts:
    items: list[tuple[str, str]]


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    numeric: list[bool]
    marked: set[int] = field(default_factory=set)  # rows to highlight (the knee)


@dataclass
class Plot:
    name: str  # file stem of the PNG, id prefix of the SVG
    figure: Figure
    caption: str
    tips: dict[str, str] = field(default_factory=dict)


@dataclass
class Code:
    text: str


@dataclass
class Details:
    summary: str
    blocks: list[Any]


Block = Heading | Para | Facts | Table | Plot | Code | Details


_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: #222; max-width: 1080px; margin: 2em auto; padding: 0 1.2em; }
h1 { font-size: 1.6em; margin-bottom: .3em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin-top: 1.5em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 13px; }
th, td { padding: .25em .7em; border-bottom: 1px solid #e4e4e4; text-align: left;
         vertical-align: top; }
th { background: #f4f6f8; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.marked td { background: #fff4e0; }
table.facts th { background: none; width: 11em; }
.banner { background: #fff3cd; border: 1px solid #e0b000; color: #5c4400; padding: .6em 1em;
          font-weight: 600; border-radius: 4px; }
.split { background: #eef4fb; border-left: 4px solid #1f5fa8; padding: .5em 1em; }
figure { margin: .5em 0 1em; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: 12.5px; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: 12px; }
code { background: #f2f2f2; padding: 0 .25em; border-radius: 3px; }
details summary { cursor: pointer; margin: .5em 0; }
"""


def _inline(text: str) -> str:
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(text))


def _html_table(t: Table, css: str = "") -> str:
    def cell(tag: str, text: str, numeric: bool) -> str:
        cls = ' class="num"' if numeric else ""
        return f"<{tag}{cls}>{html.escape(text)}</{tag}>"

    head = "".join(cell("th", h, n) for h, n in zip(t.headers, t.numeric, strict=True))
    body = []
    for i, row in enumerate(t.rows):
        cls = ' class="marked"' if i in t.marked else ""
        cells = "".join(cell("td", v, n) for v, n in zip(row, t.numeric, strict=True))
        body.append(f"<tr{cls}>{cells}</tr>")
    cls = f' class="{css}"' if css else ""
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _html_block(block: Block, svg: Callable[[Plot], str]) -> str:
    if isinstance(block, Heading):
        anchor = re.sub(r"[^a-z0-9]+", "-", block.text.lower()).strip("-")
        return f'<h{block.level} id="{anchor}">{html.escape(block.text)}</h{block.level}>'
    if isinstance(block, Para):
        cls = f' class="{block.css}"' if block.css else ""
        return f"<p{cls}>{_inline(block.text)}</p>"
    if isinstance(block, Facts):
        rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{_inline(v)}</td></tr>"
                       for k, v in block.items)
        return f'<table class="facts"><tbody>{rows}</tbody></table>'
    if isinstance(block, Table):
        return _html_table(block)
    if isinstance(block, Plot):
        return (f"<figure>{svg(block)}<figcaption>{_inline(block.caption)}"
                "</figcaption></figure>")
    if isinstance(block, Code):
        return f"<pre>{html.escape(block.text)}</pre>"
    inner = "\n".join(_html_block(b, svg) for b in block.blocks)
    return f"<details><summary>{html.escape(block.summary)}</summary>{inner}</details>"


def write_html(title: str, blocks: Sequence[Block], out: Path) -> Path:
    """report.html in `out`: one self-contained page, plots as inline SVG with tooltips."""
    def svg(plot: Plot) -> str:
        return plots.to_inline_svg(plot.figure, prefix=f"{plot.name}-", tooltips=plot.tips)

    body = "\n".join(_html_block(b, svg) for b in blocks)
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title>"
        f"<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n"
    )
    return run_files.write_text(out / "report.html", page)


_CODE = re.compile(r"`([^`\n]+)`")
_MD_SYNTAX = re.compile(r"([\\`*\[\]|])")  # escapes, code, emphasis, links and images, cells
_LONE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")  # intraword _ is plain
_BLOCK_START = re.compile(r"^(\s*(?:\d+)?)([#+=.)-])")  # what would open a heading or a list


def _md_inline(text: str, cell: bool = False) -> str:
    """Text as Markdown that shows it as written: `backticks` become code (as in the HTML);
    everything else that Markdown or HTML would act on is escaped, since much of a report's
    text comes from a run's files (its name, trial ids, error messages, the spec)."""
    parts = _CODE.split(" ".join(text.splitlines()))
    out = []
    for i, part in enumerate(parts):
        if i % 2:  # inside a code span nothing is markup; only a table's | still splits cells
            out.append("`" + (part.replace("|", "\\|") if cell else part) + "`")
        else:
            plain = _MD_SYNTAX.sub(r"\\\1", html.escape(part, quote=False))
            out.append(_LONE_UNDERSCORE.sub(r"\\_", plain))
    return "".join(out)


def _md_para(text: str) -> str:
    """A paragraph: inline text that also cannot start a heading, a list or a rule."""
    return _BLOCK_START.sub(r"\1\\\2", _md_inline(text))


def _md_fence(text: str) -> str:
    """A fence longer than any run of backticks in `text`, so the text cannot close it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def _md_table(t: Table) -> str:
    lines = ["| " + " | ".join(_md_inline(h, cell=True) or " " for h in t.headers) + " |",
             "|" + "|".join("---:" if n else "---" for n in t.numeric) + "|"]
    for i, row in enumerate(t.rows):
        cells = [_md_inline(v, cell=True) for v in row]
        if i in t.marked:
            cells = [f"**{c}**" if c else c for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _md_block(block: Block, png: Callable[[Plot], str]) -> str:
    if isinstance(block, Heading):
        return f"{'#' * block.level} {_md_inline(block.text)}"
    if isinstance(block, Para):
        text = _md_para(block.text)
        return f"> **{text}**" if block.css == "banner" else (f"> {text}" if block.css else text)
    if isinstance(block, Facts):
        return "\n".join(f"- **{_md_inline(k)}**: {_md_inline(v)}" for k, v in block.items)
    if isinstance(block, Table):
        return _md_table(block)
    if isinstance(block, Plot):
        caption = _md_inline(block.caption)
        return f"![{caption}]({png(block)})\n\n*{caption}*"
    if isinstance(block, Code):
        fence = _md_fence(block.text)
        return f"{fence}json\n{block.text}\n{fence}"
    return f"**{_md_inline(block.summary)}**\n\n" + "\n\n".join(_md_block(b, png) for b in block.blocks)


def write_markdown(blocks: Sequence[Block], out: Path) -> list[Path]:
    """report.md in `out`, with each plot as a PNG beside it; returns every file written."""
    images: list[Path] = []

    def png(plot: Plot) -> str:
        images.append(plots.to_png(plot.figure, out / f"{plot.name}.png"))
        return images[-1].name

    text = "\n\n".join(_md_block(b, png) for b in blocks) + "\n"
    return [run_files.write_text(out / "report.md", text), *images]
