// The accessibility audit run on every Dashboard page (tests/dashboard/checks.py): it
// returns a list of problems, empty when the page passes.
(() => {
  const problems = [];
  const text = (el) => (el.textContent || "").replace(/\s+/g, " ").trim();
  const labelled = (el) => {
    const own = (el.getAttribute("aria-label") || "").trim();
    if (own) return own;
    const ids = (el.getAttribute("aria-labelledby") || "").split(/\s+/).filter(Boolean);
    return ids.map((id) => { const n = document.getElementById(id); return n ? text(n) : ""; })
      .join(" ").trim();
  };
  const visible = (el) => !!(el.offsetWidth || el.offsetHeight || el.getClientRects().length);
  for (const el of document.querySelectorAll("input:not([type=hidden]), select, textarea")) {
    if (!(el.labels && el.labels.length) && !labelled(el)) problems.push("no label: " + el.outerHTML.slice(0, 120));
  }
  for (const el of document.querySelectorAll("button, [role=button]")) {
    if (!text(el) && !labelled(el)) problems.push("button without a name: " + el.outerHTML.slice(0, 120));
  }
  for (const el of document.querySelectorAll("a[href]")) {
    if (!text(el) && !labelled(el)) problems.push("link without a name: " + el.outerHTML.slice(0, 120));
  }
  for (const el of document.querySelectorAll("[role=img]")) {
    if (!labelled(el)) problems.push("image without a name: " + el.outerHTML.slice(0, 120));
  }
  if (!document.documentElement.lang) problems.push("the page has no lang");
  if (!document.title.trim()) problems.push("the page has no title");
  if (document.querySelectorAll("main").length !== 1) problems.push("not exactly one main landmark");
  if (document.querySelectorAll("h1").length !== 1) problems.push("not exactly one h1");
  const ids = {};
  for (const el of document.querySelectorAll("[id]")) {
    if (ids[el.id]) problems.push("duplicate id: " + el.id);
    ids[el.id] = true;
  }
  const rgb = (value) => {
    const m = value.match(/rgba?\(([^)]+)\)/);
    if (!m) return null;
    const p = m[1].split(",").map((x) => parseFloat(x));
    return { r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1 };
  };
  const lum = (c) => {
    const ch = [c.r, c.g, c.b].map((v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
    return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2];
  };
  const background = (el) => {
    for (let n = el; n; n = n.parentElement) {
      const c = rgb(getComputedStyle(n).backgroundColor);
      if (c && c.a >= 1) return c;
    }
    return { r: 255, g: 255, b: 255, a: 1 };
  };
  for (const el of document.querySelectorAll("body *")) {
    const own = Array.from(el.childNodes).some((n) => n.nodeType === 3 && n.textContent.trim());
    if (!own || !visible(el) || el.closest("svg") || el.closest(".visually-hidden")) continue;
    const style = getComputedStyle(el);
    const fg = rgb(style.color), bg = background(el);
    const hi = Math.max(lum(fg), lum(bg)), lo = Math.min(lum(fg), lum(bg));
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight, 10) >= 700;
    const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
    if (ratio < needed) problems.push("contrast " + ratio.toFixed(2) + " < " + needed + ": " + text(el).slice(0, 60));
  }
  return problems;
})
