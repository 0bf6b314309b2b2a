from kernel.runtime import run
from services.events.app import create_service

run(create_service())
