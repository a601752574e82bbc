import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import {
  ICommandPalette,
  IFrame,
  MainAreaWidget,
  showErrorMessage
} from '@jupyterlab/apputils';
import { ILauncher } from '@jupyterlab/launcher';
import { INotebookTracker } from '@jupyterlab/notebook';
import { ISettingRegistry } from '@jupyterlab/settingregistry';

import { luminaIcon } from './icons';
import {
  DEFAULT_SNIPPETS,
  ITemplateInfo,
  dashboardUrl,
  withSnippet
} from './model';
import { LuminaClient } from './request';
import { DEFAULT_SETTINGS, ILuminaSettings, readSettings } from './settings';
import { LuminaSidebar } from './sidebar';

export { DEFAULT_SETTINGS, ILuminaSettings, readSettings };

export const PLUGIN_ID = 'lumina-jupyterlab:plugin';

/** The command ids the extension registers. */
export namespace CommandIDs {
  export const showSidebar = 'lumina:show-sidebar';
  export const refresh = 'lumina:refresh';
  export const openDashboard = 'lumina:open-dashboard';
  export const openRoutingLab = 'lumina:open-routing-lab';
  export const openMemoryExplorer = 'lumina:open-memory-explorer';
  export const openPolicySimulator = 'lumina:open-policy-simulator';
  export const newFromTemplate = 'lumina:new-from-template';
  export const insertSnippet = 'lumina:insert-snippet';
}

const VIEWS: { command: string; view: string; label: string; rank: number }[] =
  [
    {
      command: CommandIDs.openRoutingLab,
      view: 'routing_lab',
      label: 'Routing Lab',
      rank: 2
    },
    {
      command: CommandIDs.openMemoryExplorer,
      view: 'memory_explorer',
      label: 'Memory Explorer',
      rank: 3
    },
    {
      command: CommandIDs.openPolicySimulator,
      view: 'policy_simulator',
      label: 'Policy Simulator',
      rank: 4
    }
  ];

/**
 * The Lumina frontend: the left sidebar, palette commands, a launcher card, settings.
 */
const plugin: JupyterFrontEndPlugin<void> = {
  id: PLUGIN_ID,
  description:
    'Lumina Lab in JupyterLab: live provider health, spend against budget and a live event feed.',
  autoStart: true,
  optional: [
    ICommandPalette,
    ILauncher,
    ISettingRegistry,
    INotebookTracker,
    ILayoutRestorer
  ],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    launcher: ILauncher | null,
    settingRegistry: ISettingRegistry | null,
    notebooks: INotebookTracker | null,
    restorer: ILayoutRestorer | null
  ) => {
    const { commands, shell } = app;
    const client = new LuminaClient(app.serviceManager.serverSettings);
    let settings: ILuminaSettings = { ...DEFAULT_SETTINGS };

    const sidebar = new LuminaSidebar(client, settings, {
      openDashboard: () => void commands.execute(CommandIDs.openDashboard)
    });
    sidebar.title.icon = luminaIcon;
    sidebar.title.caption = 'Lumina';
    shell.add(sidebar, 'left', { rank: 850, type: 'Lumina' });
    restorer?.add(sidebar, 'lumina-sidebar');

    const frames = new Map<string, MainAreaWidget<IFrame>>();
    const openFrame = (url: string, label: string): MainAreaWidget<IFrame> => {
      const existing = frames.get(url);
      if (existing && !existing.isDisposed) {
        shell.activateById(existing.id);
        return existing;
      }
      const frame = new IFrame({
        sandbox: [
          'allow-scripts',
          'allow-same-origin',
          'allow-forms',
          'allow-popups',
          'allow-downloads'
        ],
        referrerPolicy: 'no-referrer'
      });
      frame.url = url;
      frame.addClass('jp-Lumina-frame');
      const widget = new MainAreaWidget({ content: frame });
      widget.id = `lumina-frame-${frames.size + 1}-${Date.now()}`;
      widget.title.label = label;
      widget.title.caption = url;
      widget.title.icon = luminaIcon;
      widget.title.closable = true;
      frames.set(url, widget);
      shell.add(widget, 'main');
      shell.activateById(widget.id);
      return widget;
    };

    const currentDirectory = (): string => {
      // the folder of the active document, else the server root
      const path = notebooks?.currentWidget?.context.path ?? '';
      return path.includes('/') ? path.slice(0, path.lastIndexOf('/')) : '';
    };

    let templates: ITemplateInfo[] = [
      { name: 'quickstart', title: 'Lumina quickstart', description: '' }
    ];

    const newFromTemplate = async (name: string, directory?: string) => {
      try {
        const created = await client.createFromTemplate(
          name,
          directory ?? currentDirectory()
        );
        return await commands.execute('docmanager:open', {
          path: created.path,
          factory: 'Notebook'
        });
      } catch (error) {
        await showErrorMessage(
          'Lumina: could not create the notebook',
          (error as Error).message ?? String(error)
        );
        return undefined;
      }
    };

    commands.addCommand(CommandIDs.showSidebar, {
      label: 'Show Lumina Sidebar',
      caption: 'Live provider health, spend against budget and live events',
      icon: args => (args.isPalette ? undefined : luminaIcon),
      execute: () => {
        shell.activateById(sidebar.id);
      }
    });

    commands.addCommand(CommandIDs.refresh, {
      label: 'Refresh Lumina Sidebar',
      execute: () => sidebar.refresh()
    });

    commands.addCommand(CommandIDs.openDashboard, {
      label: args =>
        args.isLauncher ? 'Live Dashboard' : 'Open Lumina Live Dashboard',
      caption: 'The Panel dashboard served by `lumina serve`, in a Lab tab',
      icon: args => (args.isPalette ? undefined : luminaIcon),
      execute: args => {
        const url = (args.url as string) || dashboardUrl(settings.dashboardUrl);
        return openFrame(url, (args.title as string) || 'Lumina Dashboard');
      }
    });

    for (const v of VIEWS) {
      commands.addCommand(v.command, {
        label: args => (args.isLauncher ? v.label : `Open Lumina ${v.label}`),
        caption: `The ${v.label.toLowerCase()}: a new notebook from its template, or its dashboard page (setting openViewsAs)`,
        icon: args => (args.isPalette ? undefined : luminaIcon),
        execute: async args => {
          const as = (args.as as string) || settings.openViewsAs;
          if (as === 'dashboard') {
            return openFrame(
              dashboardUrl(settings.dashboardUrl, settings.views[v.view]),
              `Lumina ${v.label}`
            );
          }
          return newFromTemplate(v.view);
        }
      });
    }

    commands.addCommand(CommandIDs.newFromTemplate, {
      label: args => {
        if (args.isLauncher) {
          return 'Lumina Notebook';
        }
        const t = templates.find(t => t.name === args.name);
        return t
          ? `New Notebook from Template: ${t.title}`
          : 'New Lumina Notebook from Template';
      },
      caption: 'A runnable notebook on the lumina_lab API',
      icon: args => (args.isPalette ? undefined : luminaIcon),
      execute: args =>
        newFromTemplate(
          (args.name as string) || 'quickstart',
          args.directory as string | undefined
        )
    });

    commands.addCommand(CommandIDs.insertSnippet, {
      label: args =>
        args.label
          ? `Insert %lumina Snippet: ${args.label}`
          : 'Insert %lumina Snippet',
      caption: 'Insert a %lumina snippet into the active notebook cell',
      isEnabled: () => !!notebooks?.activeCell,
      execute: args => {
        const cell = notebooks?.activeCell;
        if (!cell) {
          return;
        }
        const snippets = settings.snippets;
        const chosen =
          (args.code as string) ||
          snippets.find(s => s.label === args.label)?.code ||
          snippets[0]?.code ||
          DEFAULT_SNIPPETS[0].code;
        const shared = cell.model.sharedModel;
        shared.setSource(withSnippet(shared.getSource(), chosen));
      }
    });

    if (palette) {
      const category = 'Lumina';
      for (const command of [
        CommandIDs.showSidebar,
        CommandIDs.refresh,
        CommandIDs.openDashboard,
        ...VIEWS.map(v => v.command),
        CommandIDs.newFromTemplate,
        CommandIDs.insertSnippet
      ]) {
        palette.addItem({ command, category, args: { isPalette: true } });
      }
    }

    if (launcher) {
      launcher.add({
        command: CommandIDs.newFromTemplate,
        category: 'Lumina',
        rank: 0,
        args: { isLauncher: true, name: 'quickstart' }
      });
      launcher.add({
        command: CommandIDs.openDashboard,
        category: 'Lumina',
        rank: 1,
        args: { isLauncher: true }
      });
      for (const v of VIEWS) {
        launcher.add({
          command: v.command,
          category: 'Lumina',
          rank: v.rank,
          args: { isLauncher: true }
        });
      }
    }

    // templates and snippets as palette items of their own
    const paletteSnippets = new Set<string>();
    const addSnippetItems = () => {
      for (const s of settings.snippets) {
        if (palette && !paletteSnippets.has(s.label)) {
          paletteSnippets.add(s.label);
          palette.addItem({
            command: CommandIDs.insertSnippet,
            category: 'Lumina',
            args: { label: s.label, isPalette: true }
          });
        }
      }
    };
    client
      .templates()
      .then(list => {
        templates = list;
        for (const t of list) {
          palette?.addItem({
            command: CommandIDs.newFromTemplate,
            category: 'Lumina',
            args: { name: t.name, isPalette: true }
          });
        }
      })
      .catch(error =>
        console.warn('Lumina: no templates from the server', error)
      );

    if (settingRegistry) {
      settingRegistry
        .load(PLUGIN_ID)
        .then(registry => {
          const apply = () => {
            settings = readSettings(
              registry.composite as Partial<ILuminaSettings>
            );
            sidebar.configure(settings);
            addSnippetItems();
          };
          apply();
          registry.changed.connect(apply);
        })
        .catch(reason => {
          console.error('Lumina: failed to load settings.', reason);
          addSnippetItems();
        });
    } else {
      addSnippetItems();
    }
  }
};

export default plugin;
