"""`python app.py` serves on HOST:PORT (with the request-head limit of ytproxy/server.py);
`app` is the ASGI app, for `uvicorn app:app --http ytproxy.server:HeadLimitProtocol`."""

from ytproxy.app import create_app

if __name__ == "__main__":
    from ytproxy.cli import main

    main()
else:
    app = create_app()
