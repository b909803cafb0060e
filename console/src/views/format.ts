// Times as people read them: a clock time, and a duration in s/min/h.
export function clock(ms: number | null | undefined): string {
  return ms ? new Date(ms).toLocaleTimeString([], { hour12: false }) : "–";
}
export function duration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  return `${(s / 3600).toFixed(1)} h`;
}
