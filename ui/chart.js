// chart.js - small line charts on <canvas>, drawn by hand (no library): a time axis,
// a value axis from 0, one line per series, a legend. Labels are drawn as canvas text.

const COLORS = ['#1f6fd1', '#d1481f', '#2f9e44', '#9c36b5', '#e8a317', '#0c8599'];

// SERIES: [{label, points: [[t_ms, value or null], ...]}]; OPT: {unit, format}.
export function drawChart(canvas, series, opt = {}) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 360, hgt = canvas.clientHeight || 140;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(hgt * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(hgt * dpr);
  }
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, hgt);
  const fmt = opt.format || ((v) => (Math.abs(v) >= 100 ? v.toFixed(0) : v.toFixed(v >= 10 ? 1 : 2)));
  const pad = {l: 44, r: 8, t: 18, b: 18};
  const all = series.flatMap((s) => s.points).filter((p) => p[1] !== null && p[1] !== undefined);
  let t0 = Infinity, t1 = -Infinity, vmax = 0;
  for (const [t, v] of all) { t0 = Math.min(t0, t); t1 = Math.max(t1, t); vmax = Math.max(vmax, v); }
  if (!all.length) { t1 = Date.now(); t0 = t1 - 60000; }
  if (t1 - t0 < 30000) t0 = t1 - 30000;
  vmax = vmax > 0 ? vmax * 1.15 : 1;
  const x = (t) => pad.l + (t - t0) / (t1 - t0) * (w - pad.l - pad.r);
  const y = (v) => hgt - pad.b - v / vmax * (hgt - pad.t - pad.b);
  g.font = '10px system-ui, sans-serif';
  g.strokeStyle = '#e3e7ee';
  g.fillStyle = '#667';
  g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const v = vmax * i / 4;
    g.beginPath();
    g.moveTo(pad.l, y(v));
    g.lineTo(w - pad.r, y(v));
    g.stroke();
    g.fillText(fmt(v) + (opt.unit || ''), 2, y(v) + 3);
  }
  g.fillText(new Date(t0).toISOString().slice(11, 19), pad.l, hgt - 4);
  const end = new Date(t1).toISOString().slice(11, 19);
  g.fillText(end, w - pad.r - g.measureText(end).width, hgt - 4);
  let lx = pad.l;
  series.forEach((s, i) => {
    const c = s.color || COLORS[i % COLORS.length];
    g.strokeStyle = c;
    g.lineWidth = 1.6;
    g.beginPath();
    let pen = false;
    for (const [t, v] of s.points) {
      if (v === null || v === undefined) { pen = false; continue; }
      if (pen) g.lineTo(x(t), y(v)); else g.moveTo(x(t), y(v));
      pen = true;
    }
    g.stroke();
    g.fillStyle = c;
    g.fillRect(lx, 5, 10, 3);
    g.fillStyle = '#334';
    g.fillText(s.label, lx + 13, 10);
    lx += 20 + g.measureText(s.label).width;
  });
}
