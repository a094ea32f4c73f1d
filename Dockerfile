# nfscope image: a static-ish Rust build on Debian bookworm, run as nobody (65534) with file
# capabilities. Build: docker build -t nfscope:0.1.0 .   Deploy: kubectl apply -k deploy/
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
# The image ships the binary without its DWARF line tables (90 MB -> 19 MB); function symbols stay,
# so `perf` still names functions. target/release/nfscope keeps the line tables for local profiling.
RUN cargo build --release --locked -p nfscope \
 && objcopy --strip-debug target/release/nfscope /nfscope \
 && chmod 0755 /nfscope

FROM debian:bookworm-slim
# The save tools nfscope reads through (iptables-nft-save, iptables-legacy-save, ip6tables-*, ipset,
# conntrack, nft). libcap2-bin is only needed for setcap and is purged right after.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iptables nftables ipset conntrack libcap2-bin ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /nfscope /usr/local/bin/nfscope
# File capabilities: a non-root process gets no capabilities from the container runtime unless the
# binary it execs carries them (Kubernetes puts NET_ADMIN/NET_RAW in the bounding and permitted sets,
# execve as uid 65534 then clears them). With them nfscope starts with NET_ADMIN+NET_RAW effective,
# also under allowPrivilegeEscalation: false (no_new_privs only forbids gaining caps beyond the
# bounding set); it raises them into the ambient set so the save tools it forks inherit them.
RUN setcap cap_net_admin,cap_net_raw+ep /usr/local/bin/nfscope \
 && apt-get purge -y libcap2-bin && apt-get autoremove -y
USER 65534:65534
EXPOSE 9455
ENTRYPOINT ["/usr/local/bin/nfscope"]
CMD ["serve", "--listen=0.0.0.0:9455"]
