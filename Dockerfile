# Builds the Leadwire binaries on the official Swift image and runs them on its slim variant. The
# image follows the toolchain the project is built and tested with (Swift 6.3: Task.immediate needs 6.2+).
FROM swift:6.3-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        libnghttp2-dev libprotobuf-c-dev libsqlite3-dev libpq-dev zlib1g-dev libpango1.0-dev libcairo2-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Package.swift ./
COPY Sources ./Sources
COPY Tests ./Tests
RUN for p in intake-service routing-service report-service leadctl; do swift build -c release --static-swift-stdlib --product "$p" || exit 1; done \
    && mkdir /out && cp .build/release/intake-service .build/release/routing-service .build/release/report-service .build/release/leadctl /out/

FROM swift:6.3-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libnghttp2-14 libprotobuf-c1 libsqlite3-0 libpq5 zlib1g libpangocairo-1.0-0 fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --home /data leadwire && mkdir -p /data /keys && chown leadwire /data /keys
COPY --from=build /out/ /usr/local/bin/
USER leadwire
VOLUME ["/data", "/keys"]
EXPOSE 50051 50052 50053 9451 9452 9453
