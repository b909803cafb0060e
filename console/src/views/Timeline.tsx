// The last hour as a picture: one row per job, its queue wait (amber) then its run (blue),
// redrawn as time passes and as the stream brings changes.
import { useEffect, useState } from "react";
import type { Job } from "../api";
import { duration } from "./format";

const HOUR = 3600_000;
const ROW = 18;
const LEFT = 90;
const WIDTH = 1000;

export function Timeline({ jobs }: { jobs: Job[] }) {
  const [now, setNow] = useState(Date.now());
  useEffect(() => { const t = setInterval(() => setNow(Date.now()), 5000); return () => clearInterval(t); }, []);
  const start = now - HOUR;
  const shown = jobs.filter((j) => j.queued_ms !== null).slice().reverse();
  if (shown.length === 0) return <p className="empty">No jobs in the last hour.</p>;
  const x = (ms: number) => LEFT + ((Math.max(ms, start) - start) / HOUR) * (WIDTH - LEFT - 10);
  const height = shown.length * ROW + 30;
  return (
    <figure className="timeline">
      <svg viewBox={`0 0 ${WIDTH} ${height}`} role="img" aria-labelledby="timeline-title" width="100%">
        <title id="timeline-title">Queue wait and run time of each job in the last hour</title>
        {[0, 15, 30, 45, 60].map((m) => {
          const at = x(start + m * 60_000);
          return <g key={m}><line x1={at} x2={at} y1={0} y2={height - 20} className="grid" />
            <text x={at} y={height - 6} className="axis" textAnchor="middle">{m === 60 ? "now" : `-${60 - m} min`}</text></g>;
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
