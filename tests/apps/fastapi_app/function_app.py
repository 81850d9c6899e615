"""A FastAPI app behind AsgiFunctionApp, as Azure-Samples' FastAPI quickstarts write it."""

import os

import aiohttp
import azure.functions as func
from fastapi import FastAPI
from pydantic import BaseModel

fast_app = FastAPI()


class Item(BaseModel):
    name: str
    price: float


@fast_app.get("/items/{item_id}")
async def read_item(item_id: int, q: str | None = None) -> dict:
    return {"item_id": item_id, "q": q}


@fast_app.post("/items")
async def create_item(item: Item) -> dict:
    return {"name": item.name, "price_with_tax": round(item.price * 1.2, 2)}


@fast_app.get("/upstream")
async def upstream() -> dict:
    # The app setting UPSTREAM_URL, read per call; the request never chooses the URL.
    async with aiohttp.ClientSession() as session, session.get(os.environ["UPSTREAM_URL"]) as r:
        return {"upstream_status": r.status}


app = func.AsgiFunctionApp(app=fast_app, http_auth_level=func.AuthLevel.ANONYMOUS)
