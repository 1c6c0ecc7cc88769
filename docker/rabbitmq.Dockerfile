# RabbitMQ from Debian's rabbitmq-server package, for compose and the tests where the official
# rabbitmq image cannot be pulled (CI: no image registry). bookworm gives 3.10, trixie 4.0.
#   scripts/docker.sh build rabbitmq3 | rabbitmq4
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
# Debian stable's current packages, not pinned versions: these images only serve the tests.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends rabbitmq-server \
    && rm -rf /var/lib/apt/lists/* \
    && rabbitmq-plugins enable --offline rabbitmq_management
# The official image's defaults: guest may connect from outside, logs go to the console.
COPY rabbitmq.conf /etc/rabbitmq/rabbitmq.conf
# (By name: the package creates the user, so its uid is not known in advance.)
# hadolint ignore=DL3066
USER rabbitmq
ENV HOME=/var/lib/rabbitmq
EXPOSE 5672 15672
# The server itself (not Debian's wrapper script), so SIGTERM reaches the Erlang VM and
# `docker stop` takes seconds.
CMD ["/usr/lib/rabbitmq/bin/rabbitmq-server"]
