from kernel.runtime import run
from services.subscriptions.app import create_service

run(create_service())
