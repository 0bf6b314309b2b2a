// The broadcast composer, enhanced: as the message is typed, the notifications service
// renders it again (through the preview endpoint) and the page shows how many SMS parts
// it takes and the preview. Without this file the "Preview" button does the same by
// sending the form, and the page comes back previewed.
const form = document.querySelector("form[data-vestry-composer]");
const count = document.getElementById("sms-count");
const preview = document.getElementById("preview");

if (form && count && preview) {
  let timer;
  let asked = 0;

  const refresh = async () => {
    const mine = ++asked;
    const fields = new FormData(form);
    fields.set("action", "preview");
    try {
      const response = await fetch(form.dataset.previewUrl, {
        method: "POST",
        body: new URLSearchParams(fields),
        credentials: "same-origin",
        headers: { accept: "application/json" },
      });
      // A slower answer to an earlier keystroke never replaces a later one.
      if (!response.ok || mine !== asked) return;
      const answer = await response.json();
      if (mine !== asked) return;
      if (count.textContent.trim() !== answer.count) count.textContent = answer.count;
      preview.innerHTML = answer.preview;
    } catch {
      // Offline or the service is slow: the Preview button still works.
    }
  };

  const soon = () => {
    clearTimeout(timer);
    timer = setTimeout(refresh, 400);
  };
  form.addEventListener("input", soon);
  form.addEventListener("change", soon);
}
