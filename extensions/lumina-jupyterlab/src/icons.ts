import { LabIcon } from '@jupyterlab/ui-components';

/** The Lumina mark: a lens with three rays (theme colours through the jp-icon classes). */
export const luminaSvg = `<svg xmlns="http://www.w3.org/2000/svg" width="24" height="24" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <path d="M12 4.5a7.5 7.5 0 1 0 0 15 7.5 7.5 0 0 0 0-15zm0 2.2a5.3 5.3 0 1 1 0 10.6 5.3 5.3 0 0 1 0-10.6z"/>
    <rect x="11" y="0.5" width="2" height="3" rx="1"/>
    <rect x="19.2" y="4.1" width="2" height="3" rx="1" transform="rotate(45 20.2 5.6)"/>
    <rect x="2.8" y="4.1" width="2" height="3" rx="1" transform="rotate(-45 3.8 5.6)"/>
  </g>
  <circle class="jp-icon-brand1" fill="#F7A81B" cx="12" cy="12" r="3"/>
</svg>`;

export const luminaIcon = new LabIcon({
  name: 'lumina:logo',
  svgstr: luminaSvg
});
