def test_home_anonymous(testapp):
    response = testapp.get("/")
    assert response.headers["X-AUSERNAME"] == "anonymous"
    assert "Not logged in" in response.text


def test_rest_login_and_myself(testapp, users):
    response = testapp.post_json("/rest/auth/1/session", {"username": "fred", "password": "fred-password"})
    assert response.json["session"]["name"] == "appserver.session"
    me = testapp.get("/rest/api/2/myself")
    assert me.json["name"] == "fred"


def test_live_server(live_server_factory):
    import requests

    server = live_server_factory()
    response = requests.post(
        server.url + "/rest/auth/1/session", json={"username": "fred", "password": "fred-password"}
    )
    assert response.status_code == 200
    assert requests.get(server.url + "/rest/api/2/myself", cookies=response.cookies).json()["name"] == "fred"
