// The last hour as a picture (zoomed to the jobs in it): one row per job, its queue wait (amber) then its run (blue),
// redrawn as time passes and as the stream brings changes.
import { useEffect, useState } from "react";
import type { Job } from "../api";
import { duration } from "./format";

const HOUR = 3600_000;
const MIN_SPAN = 5 * 60_000;
const ROW = 18;
const LEFT = 90;
const WIDTH = 1000;

export function Timeline({ jobs }: { jobs: Job[] }) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => { const t = setInterval(() => setNow(Date.now()), 5000); return () => clearInterval(t); }, []);
  const shown = jobs.filter((j) => j.queued_ms !== null).slice().reverse();
  if (shown.length === 0) return <p className="empty">No jobs in the last hour.</p>;
  // The last hour, zoomed in to the oldest job shown (at least MIN_SPAN): a fresh burst is
  // readable, not a sliver at the right edge.
  const oldest = Math.min(...shown.map((j) => j.queued_ms ?? now));
  const span = Math.min(HOUR, Math.max(MIN_SPAN, (now - oldest) * 1.1));
  const start = now - span;
  const x = (ms: number) => LEFT + ((Math.max(ms, start) - start) / span) * (WIDTH - LEFT - 10);
  const height = shown.length * ROW + 30;
  return (
    <figure className="timeline">
      <svg viewBox={`0 0 ${WIDTH} ${height}`} role="img" aria-labelledby="timeline-title" width="100%">
        <title id="timeline-title">Queue wait and run time of each job in the last hour</title>
        {[0, 0.25, 0.5, 0.75, 1].map((f) => {
          const at = x(start + f * span);
          const ago = span * (1 - f);
          return <g key={f}><line x1={at} x2={at} y1={0} y2={height - 20} className="grid" />
            <text x={at} y={height - 6} className="axis" textAnchor="middle">{f === 1 ? "now" : `-${duration(ago)}`}</text></g>;
        })}
        {shown.map((j, i) => {
          const y = i * ROW + 4;
          const queued = j.queued_ms ?? now;
          const started = j.started_ms ?? (j.status === "queued" ? now : j.finished_ms ?? now);
          const finished = j.finished_ms ?? now;
          return (
            <g key={j.job_id} data-timeline-job={j.job_id}>
              <text x={LEFT - 6} y={y + 11} className="axis" textAnchor="end">{j.job_id}</text>
              <rect x={x(queued)} y={y} width={Math.max(2, x(started) - x(queued))} height={ROW - 6} className="wait">
                <title>{`job ${j.job_id} (${j.repo}) waited ${duration(started - queued)}`}</title>
              </rect>
              {j.started_ms !== null && (
                <rect x={x(started)} y={y} width={Math.max(2, x(finished) - x(started))} height={ROW - 6} className="run">
                  <title>{`job ${j.job_id} ran ${duration(finished - started)}${j.finished_ms ? "" : " so far"}`}</title>
                </rect>
              )}
            </g>
          );
        })}
      </svg>
      <figcaption><span className="key wait" /> queue wait <span className="key run" /> run time</figcaption>
    </figure>
  );
}
