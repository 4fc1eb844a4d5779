#!/usr/bin/env python3
"""Makes a benchmark site: a copy of the example site plus N Markdown pages.

Usage: gen-site.py SRC_ROOT DEST [PAGES]

Each generated page has TOML front matter, headings, a table, lists and a few paragraphs,
so the build exercises Markdown, Tera and compression the way a real catalogue would.
The output is deterministic (seeded), so two runs time the same input.
"""
import os
import random
import shutil
import sys

src, dest = sys.argv[1], sys.argv[2]
pages = int(sys.argv[3]) if len(sys.argv) > 3 else 10_000

if os.path.exists(dest):
    shutil.rmtree(dest)
os.makedirs(dest)
shutil.copy(os.path.join(src, "cofferdam.toml"), dest)
shutil.copytree(os.path.join(src, "templates"), os.path.join(dest, "templates"))
shutil.copytree(os.path.join(src, "content"), os.path.join(dest, "content"))

rng = random.Random(42)
WORDS = (
    "lamp light daylight warm cool desk sensor dial colour lumen bulb shade brass oak "
    "evening morning sun follows delivery warranty early bird order spare kelvin glow "
    "reading study office quiet steady flicker free gentle bright soft hinge arm base"
).split()


def sentence(n):
    words = [rng.choice(WORDS) for _ in range(n)]
    return " ".join(words).capitalize() + "."


def paragraph():
    return " ".join(sentence(rng.randint(8, 16)) for _ in range(rng.randint(3, 6)))


out_dir = os.path.join(dest, "content", "p")
os.makedirs(out_dir)
for i in range(pages):
    title = f"Aurora note {i:05d}: {sentence(4)[:-1]}"
    body = [
        "+++",
        f'title = "{title}"',
        f'description = "{sentence(10)[:-1]}"',
        "+++",
        "",
        f"## {sentence(3)[:-1]}",
        "",
        paragraph(),
        "",
        "| spec | value | note |",
        "|---|---|---|",
    ]
    for _ in range(rng.randint(4, 8)):
        body.append(f"| {rng.choice(WORDS)} | {rng.randint(1, 9999)} | {sentence(3)[:-1]} |")
    body += ["", f"### {sentence(2)[:-1]}", ""]
    for _ in range(rng.randint(3, 6)):
        body.append(f"- **{rng.choice(WORDS)}**: {sentence(6)}")
    body += ["", paragraph(), ""]
    for n in range(1, rng.randint(3, 5)):
        body.append(f"{n}. {sentence(5)} ~~{rng.choice(WORDS)}~~ *{rng.choice(WORDS)}*")
    body += ["", paragraph(), "", "[Order yours now →](/order/)", ""]
    with open(os.path.join(out_dir, f"{i:05d}.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(body))
print(f"gen-site: {pages} pages under {out_dir}")
