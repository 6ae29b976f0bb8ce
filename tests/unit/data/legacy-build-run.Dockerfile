FROM debian:bookworm-slim AS build
RUN echo "compiling"; for i in 1 2 3; do echo "line $i"; done; echo "warning: something" >&2
ARG FAIL=0
RUN if [ "$FAIL" = 1 ]; then echo "E: Unable to locate package nosuch"; exit 100; fi; echo ok > /out.txt

FROM scratch AS final
COPY --from=build /out.txt /out.txt
LABEL a=b
