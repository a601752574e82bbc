import { DEFAULT_PANELS, DEFAULT_SNIPPETS } from './model';
import { DEFAULT_SIDEBAR_OPTIONS, ISidebarOptions } from './sidebar';

/** Everything the settings registry holds for us (schema/plugin.json). */
export interface ILuminaSettings extends ISidebarOptions {
  dashboardUrl: string;
  openViewsAs: 'notebook' | 'dashboard';
  views: Record<string, string>;
  snippets: { label: string; code: string }[];
}

export const DEFAULT_SETTINGS: ILuminaSettings = {
  ...DEFAULT_SIDEBAR_OPTIONS,
  dashboardUrl: 'http://localhost:5006/',
  openViewsAs: 'notebook',
  views: {
    routing_lab: '?components=routing',
    memory_explorer: '?components=memory',
    policy_simulator: '?components=policy'
  },
  snippets: DEFAULT_SNIPPETS
};

/** Read our settings out of the registry's composite (missing keys take the defaults). */
export function readSettings(
  composite: Partial<ILuminaSettings>
): ILuminaSettings {
  return {
    ...DEFAULT_SETTINGS,
    ...composite,
    panels: { ...DEFAULT_PANELS, ...(composite.panels ?? {}) },
    views: { ...DEFAULT_SETTINGS.views, ...(composite.views ?? {}) },
    snippets:
      composite.snippets && composite.snippets.length
        ? composite.snippets
        : DEFAULT_SNIPPETS
  };
}
