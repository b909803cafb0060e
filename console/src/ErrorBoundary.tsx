// A rendering error shows the banner (and what rendered before stays away): never a blank page.
import { Component, type ReactNode } from "react";

interface Props { children: ReactNode; onError: (message: string) => void }
interface State { failed: boolean }

export class ErrorBoundary extends Component<Props, State> {
  state: State = { failed: false };
  static getDerivedStateFromError(): State { return { failed: true }; }
  componentDidCatch(error: Error) { this.props.onError(error.message); }
  render() {
    return this.state.failed ? <p className="empty">This view failed to render.</p> : this.props.children;
  }
}
