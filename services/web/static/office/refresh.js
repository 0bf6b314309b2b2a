// A page that follows something still going (a broadcast going out): every few seconds
// the page is fetched again; the part marked data-vestry-refresh is swapped for its new
// version, and each status line marked data-vestry-live takes its new words in place (so
// that a screen reader announces them), until the new version no longer asks to be
// refreshed. Without this file, reloading the page does the same.
const follow = async (id, seconds) => {
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  let page;
  try {
    const response = await fetch(window.location.href, {
      credentials: "same-origin",
      headers: { accept: "text/html" },
    });
    if (!response.ok) return;
    page = new DOMParser().parseFromString(await response.text(), "text/html");
  } catch {
    return; // The network went: the "Check progress" button still works.
  }
  for (const live of document.querySelectorAll("[data-vestry-live][id]")) {
    const fresh = page.getElementById(live.id);
    if (fresh && fresh.textContent !== live.textContent) live.textContent = fresh.textContent;
  }
  const part = document.getElementById(id);
  const fresh = page.getElementById(id);
  if (!part || !fresh) return;
  part.replaceWith(document.importNode(fresh, true));
  if (fresh.hasAttribute("data-vestry-refresh")) follow(id, seconds);
};

const part = document.querySelector("[data-vestry-refresh][id]");
if (part) follow(part.id, Number(part.dataset.vestryRefresh) || 2);
