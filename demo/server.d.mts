// Types of demo/server.mjs (for the tests that drive it).
import type { DemoCa } from './ca.mjs';

export interface DemoOptions {
  dir: string;
  caPort?: number;
  raPort?: number;
  sitePort?: number;
  agentUrl?: string | (() => string);
  agentStateDir?: string;
}

export interface Demo {
  ca: DemoCa;
  urls: { ca: string; ra: string; site: string };
  close(): Promise<void>;
}

export declare function startDemo(options: DemoOptions): Promise<Demo>;
