// Entry: any uncaught error or rejected promise shows a banner instead of a blank page.
import { StrictMode } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import { ErrorBoundary } from "./ErrorBoundary";
import "./style.css";

function showFatal(message: string) {
  const banner = document.getElementById("fatal");
  if (!banner) return;
  banner.hidden = false;
  banner.textContent = `The console hit an error: ${message}. Reload the page; if it persists, check the dispatcher's log.`;
}

window.addEventListener("error", (e) => showFatal(e.message || "unknown error"));
window.addEventListener("unhandledrejection", (e) => showFatal(String((e as PromiseRejectionEvent).reason)));

const root = document.getElementById("root");
if (root) {
  createRoot(root).render(
    <StrictMode>
      <ErrorBoundary onError={showFatal}>
        <App />
      </ErrorBoundary>
    </StrictMode>,
  );
} else {
  showFatal("the page has no #root element");
}
