"""The control plane's HTTP port: the live dashboard (one page, its JS and CSS
shipped in this package: no build step, nothing fetched from elsewhere), the
JSON it polls, and the control plane's /metrics."""
