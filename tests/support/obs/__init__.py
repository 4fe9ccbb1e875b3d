"""Test helpers for the observability sinks, reusable by end-to-end tests.

    from tests.support.obs.prom import start_prometheus, promtool_check_metrics
    with start_prometheus("127.0.0.1:9464", tmp_path) as prom:   # real /usr/bin/prometheus, 1 s scrapes
        prom.wait_for_scrape()
        prom.wait_for_value("sum(agtap_requests_total)", 3)
        prom.query_value('sum(agtap_token_count_sum{token_type="input"})')

    from tests.support.obs.otlp import OtlpReceiver
    with OtlpReceiver() as rx:                                   # OTLP/HTTP, protobuf decoded
        ...  # point agtap at rx.endpoint (--otel), then rx.wait_for_spans(n), rx.wait_for_metrics({...})

    from tests.support.obs.calls import llm_call, mcp_call       # Call records shaped like the pipeline's
"""
