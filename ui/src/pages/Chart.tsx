// A live line chart (uPlot: small, fast, canvas) of the last minutes of one metric.

import { useEffect, useRef } from 'preact/hooks';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';

export const WINDOW = 120; // seconds shown

function clock(seconds: number): string {
  return new Date(seconds * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export interface Series {
  times: number[];
  values: number[];
}

export function LiveChart({ title, series, max }: { title: string; series: Series; max?: number }) {
  const box = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);

  useEffect(() => {
    if (!box.current) return;
    const width = Math.max(240, box.current.clientWidth);
    plot.current = new uPlot(
      {
        width,
        height: 160,
        legend: { show: false },
        scales: {
          // a fixed window that slides: the axis reads as clock times from the first sample on
          x: { time: true, range: (_u, _min, last) => [last - WINDOW, last] },
          y: { range: () => [0, max ?? 100] },
        },
        axes: [{ values: (_u, ticks) => ticks.map(clock), space: 70 }, { values: (_u, ticks) => ticks.map((t) => `${t}%`), size: 52 }],
        series: [{}, { label: title, stroke: '#1f6fb2', fill: 'rgba(31,111,178,0.12)', width: 2 }],
      },
      [series.times, series.values],
      box.current,
    );
    const resize = () => box.current && plot.current?.setSize({ width: box.current.clientWidth, height: 160 });
    addEventListener('resize', resize);
    return () => {
      removeEventListener('resize', resize);
      plot.current?.destroy();
      plot.current = null;
    };
  }, [title, max]);

  useEffect(() => {
    plot.current?.setData([series.times, series.values]);
  }, [series]);

  const last = series.values[series.values.length - 1];
  return (
    <figure class="chart" data-samples={series.values.length}>
      <figcaption>
        {title}: <strong data-testid={`metric-${title}`}>{last === undefined ? '—' : `${last.toFixed(1)}%`}</strong>
      </figcaption>
      <div ref={box} role="img" aria-label={`${title} over the last minutes`} />
    </figure>
  );
}
