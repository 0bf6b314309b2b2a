from kernel.runtime import run
from services.notifications.app import create_service

run(create_service())
