// The types each dashboard must satisfy: Grafana's published Dashboard and Panel
// types (@grafana/schema), narrowed where Grafana's are open-ended: panel options
// must be the timeseries or stat panel's own Options (or a row, expanded), and every
// target a Prometheus query (Grafana types targets as Record<string, unknown>). Grafana's string enums
// (LegendDisplayMode and friends) become the unions of their values, which is what a
// JSON file can hold.
import type { Dashboard, DataSourceRef, Panel, RowPanel } from '@grafana/schema';
import type { Options as StatOptions } from '@grafana/schema/dist/esm/raw/composable/stat/panelcfg/x/StatPanelCfg_types.gen';
import type {
  FieldConfig as TimeSeriesFieldConfig,
  Options as TimeSeriesOptions,
} from '@grafana/schema/dist/esm/raw/composable/timeseries/panelcfg/x/TimeSeriesPanelCfg_types.gen';

/** `T` with every string enum replaced by the union of its string values. */
type Json<T> = T extends string
  ? `${T}`
  : T extends readonly (infer U)[]
    ? Json<U>[]
    : T extends object
      ? { [K in keyof T]: Json<T[K]> }
      : T;

/** A Prometheus query as Grafana stores it in a panel. */
export interface PromTarget {
  refId: string;
  expr: string;
  legendFormat?: string;
  datasource?: DataSourceRef;
  range?: boolean;
  instant?: boolean;
}

type Common = Omit<Panel, 'type' | 'options' | 'targets' | 'fieldConfig'> & {
  datasource: DataSourceRef;
  targets: PromTarget[];
};

export type TimeSeriesPanel = Common & {
  type: 'timeseries';
  options: Partial<TimeSeriesOptions>;
  fieldConfig: NonNullable<Panel<object, Partial<TimeSeriesFieldConfig>>['fieldConfig']>;
};

export type StatPanel = Common & {
  type: 'stat';
  options: Partial<StatOptions>;
  fieldConfig: NonNullable<Panel['fieldConfig']>;
};

/** A row heading the panels below it (expanded: its panels follow it in `panels`). */
export type Row = Omit<RowPanel, 'panels'> & {
  collapsed: false;
  title: string;
  panels: [];
};

export type ShardlineDashboard = Json<
  Omit<Dashboard, 'panels'> & {
    uid: string;
    title: string;
    panels: Array<TimeSeriesPanel | StatPanel | Row>;
  }
>;
