"""The reference: a bare FastAPI endpoint, served exactly like the API in the same run."""

from fastapi import FastAPI

app = FastAPI()


@app.get("/hello")
async def hello() -> dict[str, bool]:
    return {"ok": True}
