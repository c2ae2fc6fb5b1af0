// Style sheets imported by main.tsx: esbuild bundles them into app.css.
declare module '*.css';
