"""`python app.py` serves on HOST:PORT (with the request-head limit, event loop and
garbage-collector settings of ytproxy/server.py and ytproxy/cli.py); `app` is the ASGI
app, for `uvicorn app:app --http ytproxy.server:HeadLimitProtocol --loop asyncio`."""

from ytproxy.app import create_app

if __name__ == "__main__":
    from ytproxy.cli import main

    main()
else:
    app = create_app()
