// The node's counters from the live feed (Server-Sent Events), kept in the browser for the
// last ten minutes whatever page is shown, and the rates derived from them.

const SPAN = 600; // seconds kept
const samples = [];
const listeners = new Set();
let source = null;

export function start(path) {
  stop();
  samples.length = 0;
  source = new EventSource(path);
  source.addEventListener("sample", (e) => {
    const s = JSON.parse(e.data);
    samples.push(s);
    while (samples.length && samples[0].time < s.time - SPAN - 2) samples.shift();
    for (const f of listeners) f(s);
  });
}

export function stop() {
  if (source) source.close();
  source = null;
}

export function onSample(f) {
  listeners.add(f);
  return () => listeners.delete(f);
}

export function latest() {
  return samples.length ? samples[samples.length - 1] : null;
}

const WINDOW = 5; // samples a rate is averaged over: a count every few seconds is not a comb

/** Rates per second over the last WINDOW samples, and the connections: [[t, value], ...]. */
export function series() {
  const out = { connections: [], in: [], out: [], errors: [] };
  for (let i = 0; i < samples.length; i++) {
    const s = samples[i];
    out.connections.push([s.time, s.connections]);
    if (i === 0) continue;
    const p = samples[Math.max(0, i - WINDOW)];
    const dt = Math.max(s.time - p.time, 1e-3);
    // A restarted node starts its counters again: never a negative rate.
    out.in.push([s.time, Math.max(0, (s.published - p.published) / dt)]);
    out.out.push([s.time, Math.max(0, (s.delivered - p.delivered) / dt)]);
    out.errors.push([s.time, Math.max(0, (s.errors - p.errors) / dt)]);
  }
  return out;
}

export { SPAN };
