# server-monitor alone, FROM scratch: the static release binary and nothing
# else (no shell, no libc, no users). Your server's image is yours: copy the
# monitor into it and make it the entrypoint, so that it runs as pid 1, starts
# your server as its child, restarts it, reaps orphans and turns `docker stop`
# into a clean stop:
#
#   make release && docker build -t server-monitor .
#
#   # in your app's Dockerfile:
#   COPY --from=server-monitor /usr/local/bin/server-monitor /usr/local/bin/server-monitor
#   ENTRYPOINT ["/usr/local/bin/server-monitor", "--"]
#   CMD ["uvicorn", "src.main:app", "--host", "0.0.0.0", "--port", "8000"]
#
# Settings come from the environment (HEALTH_URL, LOG_DIR, SMTP_*, ...), as
# everywhere; see README.md "Under Docker" and scripts/docker/docker-compose.yml.
# The build context is the repository; .dockerignore sends only the binary.
FROM scratch
COPY target/x86_64-unknown-linux-gnu/release/server-monitor /usr/local/bin/server-monitor
# SIGTERM (docker stop) stops the server (STOP_TIMEOUT) and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/server-monitor"]
CMD ["--help"]
