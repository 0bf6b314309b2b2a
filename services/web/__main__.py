from services.web.app import serve

serve()
