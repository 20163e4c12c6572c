/**
 * An OpenTelemetry SDK for the tests: a meter provider whose reader collects on demand, and a tracer provider
 * that keeps finished spans in memory.
 */
import type { Attributes, AttributeValue } from '@opentelemetry/api';
import {
  DataPointType,
  type HistogramMetricData,
  MeterProvider,
  type MetricData,
  MetricReader,
  type SumMetricData,
} from '@opentelemetry/sdk-metrics';
import {
  BasicTracerProvider,
  InMemorySpanExporter,
  type ReadableSpan,
  SimpleSpanProcessor,
} from '@opentelemetry/sdk-trace-base';

/** A reader that collects when asked, and only then. */
class ManualReader extends MetricReader {
  protected override async onShutdown(): Promise<void> {}
  protected override async onForceFlush(): Promise<void> {}
}

export interface Telemetry {
  meterProvider: MeterProvider;
  tracerProvider: BasicTracerProvider;
  /** Collects every metric now. */
  metrics(): Promise<Metrics>;
  /** The spans that have ended, in the order they ended. */
  spans(name?: string): ReadableSpan[];
  shutdown(): Promise<void>;
}

export function telemetry(): Telemetry {
  const reader = new ManualReader();
  const meterProvider = new MeterProvider({ readers: [reader] });
  const exporter = new InMemorySpanExporter();
  const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] });
  return {
    meterProvider,
    tracerProvider,
    async metrics() {
      const { resourceMetrics, errors } = await reader.collect();
      if (errors.length > 0) throw new AggregateError(errors, 'metric collection failed');
      return new Metrics(resourceMetrics.scopeMetrics.flatMap((scope) => scope.metrics));
    },
    spans: (name) => exporter.getFinishedSpans().filter((span) => name === undefined || span.name === name),
    async shutdown() {
      await Promise.all([meterProvider.shutdown(), tracerProvider.shutdown()]);
    },
  };
}

function matches(attributes: Attributes, wanted: Attributes): boolean {
  return Object.entries(wanted).every(([key, value]) => attributes[key] === value);
}

/** One collection's metrics, by name. */
export class Metrics {
  readonly #byName: Map<string, MetricData>;

  constructor(metrics: MetricData[]) {
    this.#byName = new Map(metrics.map((metric) => [metric.descriptor.name, metric]));
  }

  get names(): string[] {
    return [...this.#byName.keys()].sort();
  }

  metric(name: string): MetricData | undefined {
    return this.#byName.get(name);
  }

  /** The sum of a counter's (or an up-down counter's) points whose attributes include `wanted`; 0 if none. */
  sum(name: string, wanted: Attributes = {}): number {
    const metric = this.#byName.get(name);
    if (metric === undefined) return 0;
    if (metric.dataPointType !== DataPointType.SUM) throw new Error(`${name} is not a sum`);
    return (metric as SumMetricData).dataPoints
      .filter((point) => matches(point.attributes, wanted))
      .reduce((total, point) => total + point.value, 0);
  }

  /** The attribute sets of a metric's points. */
  series(name: string): Attributes[] {
    return (this.#byName.get(name)?.dataPoints ?? []).map((point) => point.attributes);
  }

  /** How many values a histogram recorded, and their sum, over the points whose attributes include `wanted`. */
  histogram(name: string, wanted: Attributes = {}): { count: number; sum: number; max: number } {
    const metric = this.#byName.get(name);
    if (metric === undefined) return { count: 0, sum: 0, max: 0 };
    if (metric.dataPointType !== DataPointType.HISTOGRAM) throw new Error(`${name} is not a histogram`);
    const points = (metric as HistogramMetricData).dataPoints.filter((point) =>
      matches(point.attributes, wanted),
    );
    return {
      count: points.reduce((total, point) => total + point.value.count, 0),
      sum: points.reduce((total, point) => total + (point.value.sum ?? 0), 0),
      max: Math.max(0, ...points.map((point) => point.value.max ?? 0)),
    };
  }
}

export function attribute(span: ReadableSpan, key: string): AttributeValue | undefined {
  return span.attributes[key];
}
