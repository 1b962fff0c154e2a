// Tiny SVG bar charts (no inline styles, so the page's CSP holds).

const NS = "http://www.w3.org/2000/svg";

export function barChart(svg, values, { width = 300, height = 80, slots = 60 } = {}) {
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  const shown = values.slice(-slots);
  const max = Math.max(1, ...shown);
  const step = width / slots;
  const offset = slots - shown.length;
  shown.forEach((value, i) => {
    const h = (value / max) * (height - 4);
    const rect = document.createElementNS(NS, "rect");
    rect.setAttribute("x", String((offset + i) * step + 0.5));
    rect.setAttribute("y", String(height - h));
    rect.setAttribute("width", String(Math.max(1, step - 1)));
    rect.setAttribute("height", String(h));
    rect.setAttribute("class", "bar");
    const title = document.createElementNS(NS, "title");
    title.textContent = String(value);
    rect.appendChild(title);
    svg.appendChild(rect);
  });
  const label = document.createElementNS(NS, "text");
  label.setAttribute("x", "4");
  label.setAttribute("y", "12");
  label.setAttribute("class", "axis");
  label.textContent = `max ${Math.round(max)}`;
  svg.appendChild(label);
  svg.dataset.points = String(shown.length);
  svg.dataset.total = String(shown.reduce((a, b) => a + b, 0));
}

// Fill gaps between 10-second buckets with zeros so time stays linear.
export function densify(series, bucketSeconds) {
  if (!series.length) return [];
  const out = [];
  const end = Math.floor(Date.now() / 1000 / bucketSeconds) * bucketSeconds;
  let t = series[0].unixSeconds;
  let i = 0;
  while (t <= Math.max(end, series[series.length - 1].unixSeconds)) {
    if (i < series.length && series[i].unixSeconds === t) out.push(series[i++]);
    else out.push(null);
    t += bucketSeconds;
  }
  return out;
}
