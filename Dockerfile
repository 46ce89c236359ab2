# Builds the Leadwire services on the official Swift image and runs them on a slim Debian.
FROM swift:6.1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends \
        libnghttp2-dev libprotobuf-c-dev libsqlite3-dev zlib1g-dev pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN swift build -c release --product intake-service \
    && swift build -c release --product routing-service \
    && swift build -c release --product report-service \
    && mkdir /out && cp .build/release/*-service /out/

FROM swift:6.1-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends libnghttp2-14 libprotobuf-c1 libsqlite3-0 zlib1g \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/ /usr/local/bin/
VOLUME /data
