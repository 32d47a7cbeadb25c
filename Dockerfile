# syntax=docker/dockerfile:1
#
# The s3sftp server image.
#   docker build -t s3sftp .
#   docker run --read-only --tmpfs /tmp -v s3sftp-data:/var/lib/s3sftp \
#     -v "$PWD/config.yaml:/etc/s3sftp/config.yaml:ro" -p 2022:2022 -p 9090:9090 s3sftp
#
# Debian (glibc) rather than Alpine: the native addons (ssh2's crypto binding and cpu-features,
# compiled at install; argon2, prebuilt) then run on the same libc as on the Debian machines where
# the tests run.

ARG NODE_IMAGE=node:24.22.3-bookworm-slim

# Node plus what node-gyp needs to compile the native addons.
FROM ${NODE_IMAGE} AS toolchain
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
# Compile against the headers shipped in the image instead of downloading them (as the Makefile does).
ENV npm_config_nodedir=/usr/local
WORKDIR /app
COPY package.json package-lock.json ./
# npm ci's postinstall applies the pinned ssh2 patch (scripts/patch-ssh2.mjs explains it).
COPY scripts/patch-ssh2.mjs ./scripts/

# Compile TypeScript to dist/ (needs the dev dependencies: typescript, @types/*).
FROM toolchain AS build
RUN --mount=type=cache,target=/root/.npm npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# Production dependencies only, native addons compiled for this platform. A separate stage so that it
# runs alongside `build` and stays cached while only src/ changes.
FROM toolchain AS prod-deps
RUN --mount=type=cache,target=/root/.npm npm ci --omit=dev --no-audit --no-fund

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
# package.json is read at run time (`s3sftp --version`).
COPY --from=prod-deps /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
# The SftpUser CRD's schema validates users.directory files at run time (src/users/crd-schema.ts).
COPY crds ./crds
# The only places the server writes: dataDir (a volume in Kubernetes) and /tmp. Everything else can
# be a read-only root filesystem. Owned by the runtime user for `docker run` without a volume.
RUN mkdir -p /var/lib/s3sftp /etc/s3sftp \
 && chown 10001:10001 /var/lib/s3sftp \
 && chmod 0700 /var/lib/s3sftp
# A numeric user (no passwd entry needed), so Kubernetes' runAsNonRoot can verify it is not root.
USER 10001:10001
EXPOSE 2022 9090
# Node runs as PID 1 with no init process. That is enough here:
# - PID 1 gets no default signal actions from the kernel, but the server installs SIGTERM and SIGINT
#   handlers, so `docker stop` and Kubernetes start its graceful drain;
# - the server starts no child processes, so there are no zombies to reap.
# If it ever spawns processes, add tini (apt-get install tini; ENTRYPOINT ["tini", "--", ...]).
ENTRYPOINT ["node", "/app/dist/cli/main.js"]
CMD ["serve", "--config", "/etc/s3sftp/config.yaml"]
