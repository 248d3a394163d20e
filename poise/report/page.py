"""One self-contained HTML page: headings, text, tables, Markdown and images inlined as data URIs.

The page opens from a file with no network and no script: every image is a base64 ``data:`` URI and the style
sheet is inline. Text is escaped; Markdown (a bench's ``report.md``) goes through Python-Markdown with raw HTML
turned off (a ``<`` in a finding is shown, never parsed as a tag), and the
images it links to are read from the report's folder and inlined too (a link to a missing image is an error
that names it, never a broken picture).
"""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

from poise.errors import PoiseError

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { font-size: 1.6em; border-bottom: 2px solid #ccc; padding-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #e3e3e3; }
h3 { font-size: 1.05em; }
table { border-collapse: collapse; margin: .6em 0 1.2em; font-size: 13px; }
th, td { border: 1px solid #d6d6d6; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
code { background: #f4f4f4; padding: 0 3px; border-radius: 3px; }
img { max-width: 100%; display: block; margin: .5em 0 1em; }
.note { color: #666; font-size: 13px; }
summary { cursor: pointer; color: #345; margin: .4em 0; }
"""


IMAGE_TYPES = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg", ".gif": "gif", ".svg": "svg+xml"}


def image_uri(data: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64,{base64.b64encode(data).decode('ascii')}"


def figure_png(fig, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    from poise.plots import plt

    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def browser_url(href: str) -> str:
    """``href`` as a browser reads it before it looks for a scheme (the WHATWG URL parser): leading and trailing
    C0 controls and spaces stripped, tabs and line breaks removed anywhere. ``"\\x01java\\nscript:"`` is a
    ``javascript:`` link to a browser, so a check must look at this, not at the raw text."""
    return re.sub(r"[\t\n\r]", "", href).strip("".join(map(chr, range(0x21))))


MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "jpeg": b"\xff\xd8\xff", "gif": b"GIF8"}


def picture(path: Path, folder: Path) -> tuple[bytes, str]:
    """The bytes and image type of ``path``, which must be a picture file inside ``folder`` once every symbolic
    link is resolved, and whose content must be the picture its name says: a report never inlines a file from
    elsewhere (a link to ~/.ssh/id_rsa named robust.png), nor a text file under a picture's name."""
    folder = Path(folder)
    resolved = Path(path).resolve()
    kind = IMAGE_TYPES.get(resolved.suffix.lower())
    if kind is None or not resolved.is_relative_to(folder.resolve()) or not resolved.is_file():
        raise PoiseError(f"{path}: not a picture file (.png, .jpg, .gif, .svg) inside {folder} (a symbolic link "
                         f"is followed first); run the command that wrote it again to write its plots")
    data = resolved.read_bytes()
    if not (data.startswith(MAGIC[kind]) if kind in MAGIC else b"<svg" in data[:1024]):
        raise PoiseError(f"{path}: its content is not a {kind.split('+')[0].upper()} picture; run the command "
                         f"that wrote it again to write its plots")
    return data, kind


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


class Page:
    """An HTML document built in order: ``heading``, ``text``, ``table``, ``image``, ``markdown``; ``save``."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []

    def heading(self, text: str, level: int = 2) -> None:
        self.parts.append(f"<h{level}>{html.escape(text)}</h{level}>")

    def text(self, text: str, note: bool = False) -> None:
        cls = ' class="note"' if note else ""
        self.parts.append(f"<p{cls}>{html.escape(text)}</p>")

    def table(self, header, rows, folded: str | None = None) -> None:
        """A table; with ``folded``, shut under that summary line (an HTML ``<details>``, no script)."""
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(_cell(v))}</td>" for v in row) + "</tr>" for row in rows)
        table = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
        if folded:
            table = f"<details><summary>{html.escape(folded)}</summary>{table}</details>"
        self.parts.append(table)

    def image(self, png: bytes | Path, alt: str, folder: Path | None = None) -> None:
        """An image from PNG bytes, or from a PNG file inside ``folder`` (``picture``)."""
        data = picture(Path(png), Path(folder or Path(png).parent))[0] if isinstance(png, (str, Path)) else png
        self.parts.append(f'<img src="{image_uri(data)}" alt="{html.escape(alt)}">')

    def markdown(self, text: str, folder: Path) -> None:
        """Markdown (tables included) with every linked image of ``folder`` inlined. Raw HTML is shown as text;
        a link that would leave the page (a scheme such as http: or javascript:, an absolute path) keeps its
        text and loses its address; an image must be a picture file inside ``folder``."""
        import markdown

        md = markdown.Markdown(extensions=["tables"], output_format="html")
        md.preprocessors.deregister("html_block")  # raw HTML in the text is text, escaped, never markup
        md.inlinePatterns.deregister("html")
        body = md.convert(text)
        folder = Path(folder)

        def inline(match: re.Match) -> str:
            data, kind = picture(folder / html.unescape(match.group(2)), folder)
            return f'<img{match.group(1)} src="{image_uri(data, kind)}"'

        def local(match: re.Match) -> str:
            href = browser_url(html.unescape(match.group(1)))
            leaves = re.match(r"[A-Za-z][A-Za-z0-9+.-]*:", href) or href.startswith(("/", "\\"))
            return "<a>" if leaves else f'<a href="{html.escape(href)}">'

        body = re.sub(r'<img([^>]*?) src="([^"]*)"', inline, body)
        self.parts.append(re.sub(r'<a href="([^"]*)"[^>]*>', local, body))

    def html(self) -> str:
        return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
                f"<title>{html.escape(self.title)}</title><style>{STYLE}</style></head>\n<body>\n"
                f"<h1>{html.escape(self.title)}</h1>\n" + "\n".join(self.parts) + "\n</body></html>\n")

    def save(self, path: Path) -> Path:
        """Write the page to a temporary file and rename it (a reader never sees half a report)."""
        path = Path(path)
        partial = path.with_suffix(".html.partial")
        partial.write_text(self.html(), encoding="utf-8")
        partial.replace(path)
        return path
