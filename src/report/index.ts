/** Evaluation reports: JSON, HTML (inline SVG plots) and Markdown, from a predictions CSV. */
export * from './evaluation';
export * from './html';
export * from './markdown';
export * from './predictions-csv';
