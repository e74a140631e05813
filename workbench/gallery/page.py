"""The gallery page: index.md and index.html list every figure with its caption and links to its data;
index.json keeps what earlier builds drew, so that building one figure does not drop the others.

    >>> write_gallery(Path("figures"), done)      # done: what builder.build drew, one dict per figure
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from workbench.gallery.explorer import explorer_links
from workbench.gallery.registry import recipes


def write_gallery(out: Path, figures: list[dict]) -> None:
    """index.md and index.html listing every figure with its caption and links to its data."""
    known = {f["name"]: f for f in figures}
    order = list(recipes())
    index_path = out / "index.json"
    if index_path.is_file():  # keep figures drawn by earlier calls that this call did not redo
        for old in json.loads(index_path.read_text()):
            if old["name"] not in known and old["name"] in order and (out / old["png"]).is_file():
                known[old["name"]] = old
    items = sorted(known.values(), key=lambda f: order.index(f["name"]) if f["name"] in order else len(order))
    index_path.write_text(json.dumps(items, indent=2))
    md = ["# Sink Workbench — figure gallery", "",
          "Each figure has its PNG, PDF, the CSV of exactly what it plots, and the Results (with provenance) "
          "it was drawn from.", ""]
    links = explorer_links(out)  # attention explorer pages written under OUT/explore/ (`sinkbench explore`)
    if links:
        md += ["## Attention explorers", ""] + [f"- [{link['title']}]({link['href']})" for link in links] + [""]
    for f in items:
        md += [f"## {f['title']} (`{f['name']}`)", "", f"![{f['name']}]({f['png']})", "", f["caption"], "",
               f"[PDF]({f['pdf']}) · [plotted data (CSV)]({f['csv']}) · [Results + provenance]({f['data']})", ""]
    (out / "index.md").write_text("\n".join(md))
    cards = "\n".join(
        f"<section><h2>{html.escape(f['title'])} <code>{html.escape(f['name'])}</code></h2>"
        f"<a href='{f['png']}'><img src='{f['png']}' alt='{html.escape(f['name'])}'></a>"
        f"<p>{html.escape(f['caption'])}</p><p><a href='{f['pdf']}'>PDF</a> · <a href='{f['csv']}'>plotted data"
        f"</a> · <a href='{f['data']}'>Results + provenance</a></p></section>" for f in items)
    if links:
        explorers = "".join(
            f"<li><a href='{html.escape(link['href'])}'>{html.escape(link['title'])}</a> ({link['sequences']} x "
            f"{link['positions']} positions, {link['bytes'] / 1e6:.1f} MB)</li>" for link in links)
        cards = f"<section><h2>Attention explorers</h2><ul>{explorers}</ul></section>" + cards
    (out / "index.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>Sink Workbench figures</title><style>"
        "body{font-family:sans-serif;max-width:1000px;margin:auto;padding:1em}img{max-width:100%;"
        "border:1px solid #ddd}section{margin-bottom:2.5em}</style></head><body>"
        f"<h1>Sink Workbench — figure gallery</h1>{cards}</body></html>\n")
